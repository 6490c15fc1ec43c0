"""The report as a person sees it: every figure there, decodable and not blank; the numbers on the
page equal ``metrics.json`` and the model's own outputs; the model card, the loss curves, the
verdicts and the restoration triplets; the page loads in a real headless Chromium."""

import html.parser
import json
import os
import pathlib
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipelines.cli import cli
from pipelines.config import EvaluateConfig
from pipelines.evaluate import figures
from pipelines.evaluate.data import Examples
from pipelines.evaluate.job import run_evaluate
from pipelines.evaluate.report import format_number
from pipelines.evaluate.results import AnomalyOutputs
from pipelines.preprocess.transform import is_eval
from tests.browser import load_page
from tests.helpers import serve

EVAL_PERCENT = 25  # as in conftest's `preprocessed`
PLAIN_FIGURES = {"reconstructions.png", "latent.png", "interpolation.png", "errors.png"}
# A model `hourglass train` made (training.json: loss curves; a calibration: the most and least anomalous
# images) evaluated on a preprocess output (the probe).
TRAINED_FIGURES = PLAIN_FIGURES | {"loss.png", "probe.png", "anomalies.png"}


class _PageParser(html.parser.HTMLParser):
    """Collects image sources, link targets, scripts and every ``data-metric`` number with its text."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts, self.metrics = [], [], 0, []
        self._open = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "script" or tag == "link":
            self.scripts += 1
        if "data-metric" in attrs:
            self._open = [tuple(json.loads(attrs["data-metric"])), ""]

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data

    def handle_endtag(self, tag):
        if self._open is not None and tag == "span":
            self.metrics.append(tuple(self._open))
            self._open = None


def _parse(report_dir: pathlib.Path) -> _PageParser:
    parser = _PageParser()
    parser.feed((report_dir / "index.html").read_text())
    return parser


def _numeric_leaves(value, path=()) -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numeric_leaves(item, (*path, key)).items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {path: value}
    return {}


def _pixels(path: pathlib.Path) -> np.ndarray:
    with Image.open(path) as image:
        image.verify()  # a whole, well-formed PNG
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _served_errors(model_dir: str, images: list[bytes]) -> np.ndarray:
    return serve(os.path.join(model_dir, "saved_model"), images)["reconstruction_error"]


@pytest.fixture(scope="module")
def report(trained, preprocessed, tmp_path_factory):
    """The report of the dense 4-D model on the preprocess output (eval split, train as reference)."""
    train_cfg, _ = trained
    out = tmp_path_factory.mktemp("report")
    result = run_evaluate(EvaluateConfig(train_cfg.model_dir, str(out), data=preprocessed.output))
    return pathlib.Path(result.index_html).parent


@pytest.fixture(scope="module")
def variational_denoiser(preprocessed, tmp_path_factory):
    """A real 2-D VAE trained (untrained weights are enough here) with mask noise, exported."""
    import keras

    from models.config import ModelConfig
    from models.export import export_model
    from models.input_pipeline import image_shape, load_transform_output
    from models.registry import build_autoencoder

    tft_output = load_transform_output(preprocessed.output)
    shape = image_shape(tft_output)
    keras.utils.set_random_seed(0)
    config = ModelConfig("vae", latent_dim=2, noise="mask:0.3")
    model = build_autoencoder(config, shape)
    model.build((None, *shape))
    model_dir = str(tmp_path_factory.mktemp("vae"))
    export_model(
        model, tft_output, model_dir, {"kind": "vae", "latent_dim": 2, "loss": config.loss, "image_shape": list(shape)}
    )
    return model_dir


def test_every_figure_exists_decodes_and_is_not_blank(report):
    page = _parse(report)
    assert set(page.images) == TRAINED_FIGURES
    assert set(page.images) == {p.name for p in report.glob("*.png")}  # nothing drawn but not shown
    for name in page.images:
        pixels = _pixels(report / name)
        assert pixels.shape[0] > 150 and pixels.shape[1] > 250, name
        assert pixels.std() > 20, f"{name} is (nearly) one colour"
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, f"{name} has almost no content"


def test_numbers_on_the_page_equal_metrics_json(report):
    metrics = json.loads((report / "metrics.json").read_text())
    leaves = _numeric_leaves(metrics)
    shown = _parse(report).metrics
    assert {path for path, _ in shown} == set(leaves)  # every number of metrics.json is on the page
    for path, text in shown:
        assert text == format_number(leaves[path]), path
        assert float(text) == pytest.approx(leaves[path], rel=1e-3, abs=1e-12), path


def test_metrics_agree_with_the_model_and_the_data(report, trained, image_tree):
    root, images = image_tree
    metrics = json.loads((report / "metrics.json").read_text())
    train_cfg, _ = trained
    eval_ids = sorted(i for i in images if is_eval(i, EVAL_PERCENT))
    train_ids = sorted(i for i in images if not is_eval(i, EVAL_PERCENT))
    assert metrics["data"]["evaluated"] == len(eval_ids) and metrics["data"]["reference"] == len(train_ids)
    assert {label: v["examples"] for label, v in metrics["per_label"].items()} == {
        label: sum(i.startswith(label + "/") for i in eval_ids) for label in {i.split("/")[0] for i in eval_ids}
    }
    # The TFRecords' pixels, re-encoded for the model, give exactly the errors of the original files.
    raw = lambda ids: [(root / i).read_bytes() for i in ids]  # noqa: E731
    served = _served_errors(train_cfg.model_dir, raw(eval_ids))
    assert metrics["reconstruction"]["mse_mean"] == pytest.approx(float(np.mean(served)), rel=1e-5)
    threshold = np.percentile(_served_errors(train_cfg.model_dir, raw(train_ids)), 99)
    assert metrics["anomaly"]["threshold"] == pytest.approx(float(threshold), rel=1e-5)
    assert metrics["anomaly"]["flagged"] == int(np.sum(served > metrics["anomaly"]["threshold"]))
    assert metrics["pca"]["components"] == 4
    assert metrics["classification"]["protocol"] == "fitted on the train split, scored on the eval split"
    assert set(metrics["classification"]["knn"]) == {"autoencoder", "pca"}


def test_model_card_and_loss_curves_come_from_the_model_folder(report, trained, preprocessed):
    import keras

    from models.config import ModelConfig
    from models.registry import build_autoencoder

    train_cfg, result = trained
    metrics = json.loads((report / "metrics.json").read_text())
    card = metrics["model"]
    keras.utils.set_random_seed(0)
    same_kind = build_autoencoder(ModelConfig("dense", latent_dim=4), (12, 10, 1))
    same_kind.build((None, 12, 10, 1))
    export = pathlib.Path(train_cfg.model_dir) / "saved_model"
    info = json.loads((export / "model_info.json").read_text())
    assert card | {"params": None} == {
        "kind": "dense",
        "latent_dim": 4,
        "params": None,
        "loss": info["loss"],
        "noise": None,
        "corruption": None,
        "image_shape": [12, 10, 1],
        "model_hash": info["model_hash"],
        "variational": False,
        "denoising": False,
        "weights": same_kind.count_params(),
        "size_bytes": sum(f.stat().st_size for f in export.rglob("*") if f.is_file()),
        "epochs": 10,
        "trained_on": preprocessed.output,
    }
    assert card["params"] == info["params"]
    text = (report / "index.html").read_text()
    assert "<h2>The model</h2>" in text and info["model_hash"] in text and preprocessed.output in text
    # The loss curves are the figure of training.json's history; its verdict reads the same history.
    assert '<img src="loss.png"' in text
    history = json.loads((pathlib.Path(train_cfg.model_dir) / "training.json").read_text())["history"]
    assert len(history["eval_loss"]) == 10 and history == result.history
    drop = (history["eval_loss"][-2] - history["eval_loss"][-1]) / history["eval_loss"][-2]
    assert metrics["verdicts"]["training"]["value"] == pytest.approx(drop)
    # The probe: 10 labels fit in the few train images; 100 and 1,000 do not, and the page says so.
    assert metrics["probe"]["sizes"] == [10] and set(metrics["probe"]["left_out"]) == {"100", "1000"}
    assert f"1000 labels: left out, only {metrics['data']['reference']} labelled train images." in text


@pytest.fixture(scope="module")
def constant_model(preprocessed, tmp_path_factory):
    """A real dense model exported with every weight zero: sigmoid(0) = 0.5 for every pixel of every image."""

    from models.config import ModelConfig
    from models.export import export_model
    from models.input_pipeline import image_shape, load_transform_output
    from models.registry import build_autoencoder

    tft_output = load_transform_output(preprocessed.output)
    shape = image_shape(tft_output)
    model = build_autoencoder(ModelConfig("dense", latent_dim=4, loss="mse"), shape)
    model.build((None, *shape))
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model_dir = str(tmp_path_factory.mktemp("constant"))
    export_model(model, tft_output, model_dir, {"negative_slope": 0.2})
    return model_dir


@pytest.mark.parametrize(
    ("corruption", "baseline"), [("blocks:0.3", "mean fill of the holes"), ("downscale:2", "bicubic upscaling")]
)
def test_report_shows_the_triplets_beside_the_kinds_baseline(preprocessed, tmp_path, corruption, baseline):
    from models.config import ModelConfig
    from models.export import export_model
    from models.input_pipeline import image_shape, load_transform_output
    from models.registry import build_autoencoder

    tft_output = load_transform_output(preprocessed.output)
    shape = image_shape(tft_output)
    model = build_autoencoder(ModelConfig("dense", latent_dim=4, corrupt=corruption), shape)
    model.build((None, *shape))
    export_model(model, tft_output, str(tmp_path / "m"), {})
    result = run_evaluate(EvaluateConfig(str(tmp_path / "m"), str(tmp_path / "r"), data=preprocessed.output))
    restoration = result.metrics["restoration"]
    assert restoration["corruption"] == corruption and restoration["baseline"] == baseline
    assert result.metrics["model"]["corruption"] == corruption
    if corruption.startswith("blocks"):  # the mean beats black holes on these mid-grey gradients
        assert restoration["psnr_baseline"] > restoration["psnr_corrupted"]
    else:  # the upscaling baseline is the input: the small image brought up, bicubic
        assert restoration["psnr_baseline"] == restoration["psnr_corrupted"]
    # An untrained restorer restores as its baseline in the graph does: bicubic (re-encoded as 16-bit
    # PNG on the way), or the holes filled from their neighbourhood, better than the image's mean.
    if corruption.startswith("blocks"):
        assert restoration["psnr_restored"] > restoration["psnr_baseline"]
    else:
        assert restoration["psnr_restored"] == pytest.approx(restoration["psnr_baseline"], abs=0.05)
    page = _parse(tmp_path / "r")
    assert "restoration.png" in page.images and _pixels(tmp_path / "r" / "restoration.png").std() > 20
    text = (tmp_path / "r" / "index.html").read_text()
    assert f"baseline: {baseline}" in text and f"<td>trained to undo</td><td>{corruption}</td>" in text


def test_report_of_a_constant_model_says_it_is_bad(constant_model, preprocessed, tmp_path):
    result = run_evaluate(EvaluateConfig(constant_model, str(tmp_path), data=preprocessed.output))
    metrics = result.metrics
    assert metrics["verdicts"]["variance"]["ok"] is False and metrics["verdicts"]["variance"]["value"] == 0.0
    assert metrics["verdicts"]["reconstruction"]["ok"] is False
    assert metrics["verdicts"]["reconstruction"]["value"] > 1  # a flat grey square loses to PCA
    text = (tmp_path / "index.html").read_text()
    assert "✗ <b>variance</b>: reconstructions have almost no variance" in text
    assert "✗ <b>reconstruction</b>: worse than PCA with as many dimensions" in text
    assert text.count('<div class="card bad">') >= 2
    assert json.loads((tmp_path / "metrics.json").read_text())["verdicts"] == metrics["verdicts"]
    assert "\n  variance: reconstructions have almost no variance" in result.summary()  # the command says it too


def test_page_is_self_contained(report):
    page = _parse(report)
    text = (report / "index.html").read_text()
    assert page.scripts == 0 and "http://" not in text and "https://" not in text and "url(" not in text
    for target in page.images + page.links:
        assert not target.startswith("/") and "//" not in target, target
        assert (report / target).is_file(), target


@pytest.mark.slow
def test_input_source_vae_and_denoising_sections(variational_denoiser, image_tree, tmp_path):
    root, images = image_tree
    out = tmp_path / "report"
    args = ["evaluate", "--model-dir", variational_denoiser, "--input", str(root), "--output", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output
    page = _parse(out)
    assert set(page.images) == PLAIN_FIGURES | {"latent_walk.png", "prior_samples.png", "restoration.png"}
    for name in page.images:
        assert _pixels(out / name).std() > 20, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["variational"] and metrics["model"]["denoising"]
    restoration = metrics["restoration"]
    assert restoration["corruption"] == "mask:0.3" and restoration["baseline"] == "the noisy input"
    # mask:0.3 zeroes 30% of the pixels: expected MSE of a noisy image is 0.3 * mean(pixels^2).
    expected = [10 * np.log10(1 / (0.3 * np.mean((p / 255.0) ** 2))) for p in images.values()]
    assert restoration["psnr_corrupted"] == pytest.approx(np.mean(expected), abs=0.75)
    assert restoration["psnr_baseline"] == restoration["psnr_corrupted"]  # denoising's baseline: the input
    assert np.isfinite(restoration["psnr_restored"])
    verdict = metrics["verdicts"]["restoration"]
    assert verdict["value"] == pytest.approx(restoration["psnr_restored"] - restoration["psnr_baseline"])
    assert verdict["ok"] == (verdict["value"] > 0)
    # The triplets' table: input, baseline and restored PSNR, each traced to metrics.json.
    shown = {path for path, _ in page.metrics}
    assert {("restoration", key) for key in ("psnr_corrupted", "psnr_baseline", "psnr_restored")} <= shown
    assert "baseline: the noisy input" in (out / "index.html").read_text()
    # Exported without `hourglass train`: no training.json, so no loss curves and no epoch count.
    assert metrics["model"]["epochs"] is None and "training" not in metrics["verdicts"]
    assert metrics["probe"] == {"skipped": "the probe needs a train split: evaluate a preprocess output with --data"}
    assert metrics["data"] | {"source": None} == {
        "source": None,
        "evaluated": len(images),
        "reference": len(images),
        "reference_is": "the evaluated images",
        "labels": 3,
    }
    assert "cross-validation" in metrics["classification"]["protocol"]
    # --input takes the pixels from the model's own transform: errors match what the model serves.
    served = _served_errors(variational_denoiser, [(root / i).read_bytes() for i in sorted(images)])
    assert metrics["reconstruction"]["mse_mean"] == pytest.approx(float(np.mean(served)), rel=1e-5)
    assert (out / "rejected").is_dir()


def test_evaluate_command_errors_name_the_fix(trained, tmp_path):
    train_cfg, _ = trained
    both = ["evaluate", "--model-dir", train_cfg.model_dir, "--output", str(tmp_path), "--data", "d", "--input", "i"]
    result = CliRunner().invoke(cli, both)
    assert result.exit_code == 1 and "pass exactly one of --data" in result.output
    result = CliRunner().invoke(
        cli, ["evaluate", "--model-dir", str(tmp_path), "--output", str(tmp_path), "--data", "d"]
    )
    assert result.exit_code == 1 and "run `hourglass train` first" in result.output


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, which `make test` installs before the suite runs (the suite installs nothing)."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's `chromium` is not installed: `make test` installs it (`make browser`)")
    return found


@pytest.mark.slow
@pytest.mark.integration
def test_page_loads_in_headless_chromium(report, chromium, tmp_path):
    page = load_page(chromium, (report / "index.html").as_uri())
    assert page.failed == [] and page.errors == []
    assert page.requests and all(url.startswith("file://") for url in page.requests)
    assert sorted(src for src, _, _ in page.images) == sorted(TRAINED_FIGURES)
    assert all(complete and width > 0 for _, complete, width in page.images)
    (tmp_path / "screenshot.png").write_bytes(page.screenshot)
    shot = _pixels(tmp_path / "screenshot.png")
    assert shot.shape[0] > 1500 and shot.shape[1] >= 1200  # the whole page, not the first screen
    ink = np.mean(np.any(shot < 200, axis=-1))
    assert 0.03 < ink < 0.9, f"screenshot looks blank or flooded ({ink:.3f} of pixels dark)"
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 200


@pytest.mark.slow
@pytest.mark.integration
def test_headless_check_sees_a_missing_figure(report, chromium, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(report, broken)
    (broken / "errors.png").unlink()
    page = load_page(chromium, (broken / "index.html").as_uri())
    assert len(page.failed) == 1 and "errors.png: net::ERR_FILE_NOT_FOUND" in page.failed[0]
    assert [src for src, _, width in page.images if width == 0] == ["errors.png"]


def test_the_anomalies_figure_orders_by_score_then_scored_error_and_reds_what_is_anomaly_flags():
    """Ties in ``anomaly_score`` (beyond the calibration's range) are broken by the scored error, and
    the red titles are the export's ``is_anomaly``, not the plain MSE against the threshold."""
    n = 20
    scores = np.array([1.0] * 4 + [0.5] * (n - 4))
    scored_errors = np.array([0.4, 0.1, 0.3, 0.2] + [0.05] * (n - 4))
    flagged = np.zeros(n, bool)
    flagged[[1, 2]] = True
    labels = [str(i) for i in range(n)]
    examples = Examples(labels, labels, np.zeros((n, 4, 4, 1), np.float32), [b""] * n)
    evaluation = SimpleNamespace(examples=examples, anomaly=AnomalyOutputs(scores, scored_errors, flagged))
    fig = figures.anomalous(evaluation)
    assert [ax.get_title().split(" · ")[0] for ax in fig.axes[:4]] == ["0", "2", "3", "1"]
    red = {ax.get_title().split(" · ")[0] for ax in fig.axes if ax.title.get_color() == "#c62828"}
    assert red == {"1", "2"}
