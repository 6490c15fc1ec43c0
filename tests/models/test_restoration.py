"""Restoration models (``--corrupt``): every corruption kind trains a few steps on a real colour
preprocess output (standardized, 12x10x3) and exports ``restored`` of the model's shape; the export
takes what users have (a grey image for a recolouring model, a small one for an upscaler); the
input pipeline gives the model the transform's inputs of the corrupted pixels; an untrained
restorer gives the classical baseline (``models.restoration``)."""

import numpy as np
import pytest
import tensorflow as tf

from models import input_pipeline
from models.config import ModelConfig, TrainConfig
from models.model_check import check_export
from models.model_info import ModelInfo
from models.registry import build_autoencoder
from models.restoration import LUMA, Restorer, baseline, fill
from models.training import train
from pipelines.inputs.images import encode_png
from transforms import features
from transforms.corruption import CorruptionSpec, parse_corruption
from transforms.image_ops import bicubic_to_size, corrupt, decode_pixels
from transforms.layout import TRAIN

HEIGHT, WIDTH = 12, 10
KINDS = ["gaussian:0.3", "salt-pepper:0.2", "mask:0.3", "grey", "downscale:2", "blocks:0.3"]


def colour_pixels(index: int) -> np.ndarray:
    """A uint8 HxWx3 image whose channels differ (so recolouring has something to learn)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    channels = [rows * 9 + index * 13, cols * 17 + index * 7, (rows + cols) * 5 + index * 29]
    return (np.stack(channels, axis=-1) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    """A real preprocess output of 24 colour PNGs, standardized."""
    from pipelines.config import PreprocessConfig
    from pipelines.preprocess.job import run_preprocess

    root = tmp_path_factory.mktemp("colour")
    for i in range(24):
        (root / f"{i:03d}.png").write_bytes(encode_png(colour_pixels(i)))
    out = tmp_path_factory.mktemp("colour-data")
    return run_preprocess(PreprocessConfig(str(root), str(out), eval_percent=25, normalize="standardize")).output


@pytest.fixture(scope="module")
def restorers(colour_data, tmp_path_factory):
    """{corruption: model folder} of a dense model trained one epoch with each corruption."""
    folders = {}
    for text in KINDS:
        model_dir = str(tmp_path_factory.mktemp("restorer"))
        model = ModelConfig("dense", latent_dim=3, corrupt=text)
        train(TrainConfig(data_dir=colour_data, model_dir=model_dir, model=model, epochs=1, batch_size=8))
        folders[text] = model_dir
    return folders


def _serve(model_dir: str, images: list[bytes]) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(f"{model_dir}/saved_model")
    return {k: v.numpy() for k, v in loaded.signatures["serving_default"](images=tf.constant(images)).items()}


@pytest.mark.parametrize("text", KINDS)
def test_every_corruption_trains_and_exports_restored(restorers, text):
    info = check_export(restorers[text])
    noise = parse_corruption(text).is_noise
    assert info.corruption == text and info.denoising == noise and info.noise == (text if noise else None)
    out = _serve(restorers[text], [encode_png(colour_pixels(i)) for i in range(3)])
    assert out["restored"].shape == (3, HEIGHT, WIDTH, 3) and ("denoised" in out) == noise
    assert out["restored"].min() >= 0 and out["restored"].max() <= 1
    if noise:  # no restorer (models.restoration): the denoised image is the code's reconstruction
        np.testing.assert_array_equal(out["denoised"], out["restored"])
        np.testing.assert_allclose(out["restored"], out["reconstruction"], atol=1e-6)
    else:  # the restorer works around the code: restored is not the code's reconstruction
        assert not np.allclose(out["restored"], out["reconstruction"], atol=1e-3)
    assert set(out) == set(info.outputs)


def test_the_restorer_reads_the_pixels_back_through_the_normalization(restorers):
    """The data is standardized: the restorer's baseline is only right if it undoes the transform's
    scaling (a few steps barely move the zero-initialised correction from it)."""
    image = colour_pixels(4)
    small = image[::2, ::2]
    bicubic = decode_pixels(bicubic_to_size(tf.constant(encode_png(small)), HEIGHT, WIDTH)).numpy()
    restored = _serve(restorers["downscale:2"], [encode_png(small)])["restored"][0]
    np.testing.assert_allclose(restored, bicubic, atol=0.05)
    grey = np.round(np.asarray(tf.image.rgb_to_grayscale(image.astype(np.float32)))).astype(np.uint8)
    recoloured = _serve(restorers["grey"], [encode_png(grey)])["restored"][0]
    np.testing.assert_allclose(recoloured @ np.array(LUMA), grey[..., 0] / 255, atol=0.02)  # the luma is kept


@pytest.mark.parametrize("text", KINDS)
def test_an_untrained_restorer_gives_the_classical_baseline(text):
    """The correction's last layer starts at zero: restored = the classical baseline, whatever the
    code says; a model trained with noise has no restorer and restores with its decoder."""
    spec = parse_corruption(text)
    model = build_autoencoder(ModelConfig("conv", 8, corrupt=text), (16, 16, 3))
    clean = tf.image.resize(np.stack([colour_pixels(i) for i in range(4)]).astype(np.float32) / 255, (16, 16))
    corrupted = corrupt(clean, spec, seed=1).numpy()
    restored = model(corrupted).numpy()
    if spec.kind == "grey":
        expected = np.repeat(corrupted[..., :1], 3, axis=-1)
    elif spec.kind == "blocks":
        holes = np.all(corrupted == 0, axis=-1, keepdims=True)
        assert holes.any() and np.array_equal(restored * ~holes, corrupted * ~holes)  # known pixels kept
        expected = baseline(spec, tf.constant(corrupted), tf.constant(holes, tf.float32)).numpy()
    elif spec.is_noise:
        np.testing.assert_allclose(restored, model.decode(model.encode(corrupted)).numpy(), atol=1e-6)
        return
    else:
        expected = corrupted
    np.testing.assert_allclose(restored, expected, atol=1e-6)
    assert not np.allclose(model.decode(model.encode(corrupted)).numpy(), expected, atol=1e-2)


def test_the_upscaling_correction_is_local_and_leaves_flat_images_alone():
    """ESPCN's 5x5, 3x3, 3x3 and the last 3x3 convolutions on the detail (the image minus its 3x3
    mean): a dot changes the restored image at most 1 + 2 + 1 + 1 + 1 = 6 pixels away; no biases,
    so a flat image (which bicubic gets right) is kept, even with a trained (non-zero) last layer."""
    restorer = Restorer(CorruptionSpec("downscale", 2), (24, 24, 1))
    kernel = restorer.correction.kernel
    restorer.correction.kernel.assign(np.random.default_rng(0).normal(0, 0.1, kernel.shape).astype(np.float32))
    flat = np.full((1, 24, 24, 1), 0.5, np.float32)
    np.testing.assert_array_equal(restorer([flat, flat]).numpy(), flat)
    dotted = flat.copy()
    dotted[0, 12, 12] = 0.9
    rows, cols = np.nonzero(np.abs(restorer([dotted, flat]).numpy() - dotted)[0, ..., 0] > 1e-7)
    assert rows.size and rows.min() >= 6 and rows.max() <= 18 and cols.min() >= 6 and cols.max() <= 18


def test_the_inpainting_baseline_fills_holes_with_their_neighbourhood():
    pixels = np.zeros((1, 16, 16, 1), np.float32)
    pixels[0, :, :8] = 0.2
    pixels[0, :, 8:] = 0.8
    holes = np.zeros((1, 16, 16, 1), np.float32)
    holes[0, 2:4, 2:4] = holes[0, 12:14, 12:14] = 1
    filled = fill(tf.constant(pixels * (1 - holes)), tf.constant(holes)).numpy()
    np.testing.assert_allclose(filled[0, 2:4, 2:4], 0.2, atol=1e-6)  # from the known pixels near it
    np.testing.assert_allclose(filled[0, 12:14, 12:14], 0.8, atol=1e-6)
    everything = np.ones_like(holes)
    np.testing.assert_array_equal(fill(tf.constant(pixels * 0), tf.constant(everything)).numpy(), 0)


def test_a_recolouring_model_takes_grey_images(restorers):
    grey = np.round(np.asarray(tf.image.rgb_to_grayscale(colour_pixels(5).astype(np.float32)))).astype(np.uint8)
    out = _serve(restorers["grey"], [encode_png(grey), encode_png(np.repeat(grey, 3, axis=-1))])
    assert out["restored"].shape == (2, HEIGHT, WIDTH, 3)
    np.testing.assert_allclose(out["restored"][0], out["restored"][1], atol=1e-6)  # grey is repeated to RGB


def test_an_upscaler_brings_small_images_up_bicubic(restorers):
    small = colour_pixels(3)[::2, ::2]  # 6x5
    upscaled = bicubic_to_size(tf.constant(encode_png(small)), HEIGHT, WIDTH).numpy()
    out = _serve(restorers["downscale:2"], [encode_png(small), upscaled])
    assert out["restored"].shape == (2, HEIGHT, WIDTH, 3)
    np.testing.assert_allclose(out["restored"][0], out["restored"][1], atol=1e-6)
    # A model without the corruption stretches small images with the transform's policy instead.
    other = _serve(restorers["grey"], [encode_png(small), upscaled])["reconstruction"]
    assert not np.allclose(other[0], other[1], atol=1e-4)


def test_the_corruptor_gives_the_transforms_inputs_of_the_corrupted_pixels(colour_data):
    tft_output = input_pipeline.load_transform_output(colour_data)
    files = input_pipeline.split_files(colour_data, TRAIN)
    batch = next(iter(input_pipeline.make_dataset(files, tft_output, 4, shuffle=False)))
    spec = CorruptionSpec("grey")
    corrupted = input_pipeline.corruptor(tft_output, spec)(batch)
    np.testing.assert_array_equal(corrupted[features.PIXELS], batch[features.PIXELS])  # the targets stay clean
    greyed = corrupt(batch[features.PIXELS], spec).numpy()
    pngs = tf.constant([tf.io.encode_png(tf.cast(np.round(g * 65535), tf.uint16)).numpy() for g in greyed])
    expected = tft_output.transform_features_layer()({features.IMAGE: pngs})[features.INPUTS].numpy()
    np.testing.assert_allclose(corrupted[features.INPUTS].numpy(), expected, atol=1e-2)
    assert not np.allclose(corrupted[features.INPUTS].numpy(), batch[features.INPUTS].numpy(), atol=1e-2)


def test_grey_needs_colour_data(preprocessed, tmp_path):
    cfg = TrainConfig(preprocessed.output, str(tmp_path), ModelConfig("dense", 3, corrupt="grey"), epochs=1)
    with pytest.raises(ValueError, match="needs colour images, but the data is 12x10x1; preprocess with --channels 3"):
        train(cfg)


def test_noise_and_corrupt_relate():
    assert ModelConfig(noise="mask:0.3").corruption == ModelConfig(corrupt="mask:0.3").corruption
    assert ModelConfig(noise="mask:0.3", corrupt="mask:0.3").corruption == CorruptionSpec("mask", 0.3)
    with pytest.raises(ValueError, match="--noise mask:0.3 and --corrupt grey disagree"):
        ModelConfig(noise="mask:0.3", corrupt="grey")
    with pytest.raises(ValueError, match="--noise must be one of gaussian:SIGMA, salt-pepper:P, mask:P, got 'grey'"):
        ModelConfig(noise="grey")


def test_model_info_reads_older_denoising_exports():
    older = ModelInfo("dense", 3, (4, 4, 1), "mse", {}, "", noise="gaussian:0.5", denoising=True)
    assert "corruption" not in older.to_json()  # so an older export's hash still matches
    assert older.restores == "gaussian:0.5" and "denoised" in older.outputs and "restored" not in older.outputs
    with pytest.raises(ValueError, match="corruption is 'grey' but noise is 'gaussian:0.5'"):
        ModelInfo("dense", 3, (4, 4, 3), "mse", {}, "", noise="gaussian:0.5", denoising=True, corruption="grey")
