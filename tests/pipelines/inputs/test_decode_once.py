"""Images TensorFlow's decoder refuses, and EXIF-rotated photos, through the real jobs (DirectRunner):
each bad file is one ``corrupt_image`` dead letter with the decoder's message and the job goes on;
a rotated JPEG is trained and served upright."""

import glob
import io
import os
import traceback

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from models.config import ModelConfig
from models.export import export_model
from models.input_pipeline import load_transform_output
from models.registry import build_autoencoder
from pipelines.config import EvaluateConfig, InferConfig, PreprocessConfig
from pipelines.evaluate.data import read_images
from pipelines.evaluate.exported import ExportedModel
from pipelines.infer.encode import InferenceRejectionFn
from pipelines.infer.job import run_infer
from pipelines.preprocess.job import run_preprocess
from tests.conftest import HEIGHT, WIDTH, write_image_tree
from tests.helpers import encode_image, flipped_jpeg, oriented_jpeg, read_rejected, serve, split_idat_png

BAD = {"cat/split.png": split_idat_png(np.zeros((HEIGHT, WIDTH), np.uint8)), "dog/flipped.jpg": flipped_jpeg()}


def _tree_with_bad_files(root) -> dict:
    images = write_image_tree(root)
    for name, data in BAD.items():
        (root / name).write_bytes(data)
    return images


def _ids(data_dir) -> set[str]:
    files = glob.glob(os.path.join(data_dir, "*.tfrecord.gz"))
    spec = {"id": tf.io.FixedLenFeature([], tf.string)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(lambda r: tf.io.parse_single_example(r, spec))
    return {e["id"].numpy().decode() for e in dataset}


def _assert_decoder_dead_letters(letters: list[dict], stage: str) -> None:
    assert {(d["id"], d["stage"], d["reason"]) for d in letters} == {(i, stage, "corrupt_image") for i in BAD}
    by_id = {d["id"]: d["error"] for d in letters}
    assert by_id["cat/split.png"].startswith("TensorFlow's decoder: Invalid PNG data")
    assert by_id["dog/flipped.jpg"] == (
        "TensorFlow's decoder: jpeg::Uncompress failed. Invalid JPEG data or crop window."
    )


def test_preprocess_dead_letters_what_the_decoder_refuses_and_writes_every_good_image(tmp_path):
    images = _tree_with_bad_files(tmp_path / "in")
    cfg = PreprocessConfig(
        input=str(tmp_path / "in"), output=str(tmp_path / "out"), image_size=(HEIGHT, WIDTH), max_reject_fraction=0.1
    )
    result = run_preprocess(cfg)
    assert _ids(tmp_path / "out") == set(images)
    assert result.counts["records_read"] == len(images) + 2
    assert result.counts["preprocess_rejected_corrupt_image"] == 2
    _assert_decoder_dead_letters(read_rejected(tmp_path / "out" / "rejected"), "preprocess")


def test_evaluate_input_and_infer_dead_letter_them_too(trained, tmp_path):
    train_cfg, _ = trained
    images = _tree_with_bad_files(tmp_path / "in")
    evaluate = EvaluateConfig(
        model_dir=train_cfg.model_dir, output=str(tmp_path / "report"), input=str(tmp_path / "in")
    )
    examples = read_images(evaluate, ExportedModel(train_cfg.model_dir))
    assert sorted(examples.ids) == sorted(images)
    _assert_decoder_dead_letters(read_rejected(tmp_path / "report" / "rejected"), "evaluate")

    infer = InferConfig(model_dir=train_cfg.model_dir, input=str(tmp_path / "in"), output=str(tmp_path / "pred"))
    result = run_infer(infer)
    assert result.counts["prediction_rows"] == len(images)
    assert result.manifest["rejected"] == {"corrupt_image": 2}
    _assert_decoder_dead_letters(read_rejected(tmp_path / "pred" / "_rejected"), "infer")


def _photo() -> np.ndarray:
    """A 16x24 RGB photo with distinct corners (so that every rotation and flip differs)."""
    pixels = np.full((16, 24, 3), 40, np.uint8)
    pixels[:5, :9] = (250, 250, 250)
    pixels[11:, 18:] = (220, 30, 30)
    return pixels


def test_an_exif_rotated_jpeg_is_preprocessed_and_served_upright(tmp_path):
    (tmp_path / "in").mkdir()
    rotated = oriented_jpeg(_photo(), 6)  # stored 16x24, shown 24x16 (90 degrees clockwise)
    (tmp_path / "in" / "rotated.jpg").write_bytes(rotated)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(rotated))))
    (tmp_path / "in" / "upright.png").write_bytes(encode_image(Image.fromarray(upright), "PNG"))
    result = run_preprocess(PreprocessConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), eval_percent=1))
    assert result.spec.shape == (24, 16, 3)  # the size as shown, from the header
    spec = load_transform_output(tmp_path / "out").transformed_feature_spec()
    files = glob.glob(str(tmp_path / "out" / "*.tfrecord.gz"))
    examples = {
        e["id"].numpy().decode(): e["pixels"].numpy()
        for e in tf.data.TFRecordDataset(files, compression_type="GZIP").map(
            lambda r: tf.io.parse_single_example(r, spec)
        )
    }
    assert sorted(examples) == ["rotated.jpg", "upright.png"]
    np.testing.assert_allclose(examples["rotated.jpg"] * 255, upright, atol=12)  # JPEG decoders round apart at edges

    # The exported model embeds the same decoding: the rotated JPEG encodes like the upright image.
    keras.utils.set_random_seed(0)  # random weights: a fixed draw keeps the margins below the same
    model = build_autoencoder(ModelConfig("dense", latent_dim=4), (24, 16, 3))
    saved = export_model(model, load_transform_output(tmp_path / "out"), str(tmp_path / "model"), {})
    stored = encode_image(Image.fromarray(np.asarray(Image.open(io.BytesIO(rotated)))), "PNG")  # pixels as stored
    latent = serve(saved, [rotated, encode_image(Image.fromarray(upright), "PNG"), stored])["latent"]
    np.testing.assert_allclose(latent[0], latent[1], atol=0.05)
    assert np.abs(latent[0] - latent[2]).max() > 10 * np.abs(latent[0] - latent[1]).max()


def test_an_inference_failure_keeps_the_exceptions_message():
    try:
        tf.io.decode_image(split_idat_png())
    except tf.errors.InvalidArgumentError as error:
        failure = (type(error), repr(error), traceback.format_exception(error))
    assert failure[1] == "InvalidArgumentError()"  # what the dead letter used to carry
    # An image the decoder reads, so the failure is the model's, not the file's.
    record = {"id": "a.png", "source": "/in/a.png", "image": encode_image(Image.new("L", (4, 4)), "PNG")}
    (letter,) = InferenceRejectionFn().process(([record], failure))
    assert (letter["id"], letter["reason"]) == ("a.png", "inference_failed")
    assert letter["error"].startswith("InvalidArgumentError: Invalid PNG data")
