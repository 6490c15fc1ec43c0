"""Validation of single records: every bad-input kind gets its reason; readable formats pass on."""

import io

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.pvalue import TaggedOutput
from PIL import Image

from pipelines.config import ImageLimits
from pipelines.inputs.images import encode_png
from pipelines.inputs.validation import CONVERTED, REJECTED, ValidateImagesFn
from tests.helpers import encode_image, flipped_jpeg, png_chunk, split_idat_png


def _validate(data: bytes, max_pixels: int = 1_000_000):
    """(kept record or None, dead letter or None) for one image."""
    outputs = list(
        ValidateImagesFn("preprocess", ImageLimits(max_pixels)).process([{"id": "x", "label": "", "image": data}])
    )
    converted = [out.value for out in outputs if isinstance(out, TaggedOutput) and out.tag == CONVERTED]
    outputs = [out for out in outputs if not (isinstance(out, TaggedOutput) and out.tag == CONVERTED)]
    assert len(outputs) == 1
    assert converted == ([] if isinstance(outputs[0], TaggedOutput) or outputs[0]["image"] is data else ["x"])
    out = outputs[0]
    return (None, out.value) if isinstance(out, TaggedOutput) else (out, None)


def _jpeg() -> bytes:
    return encode_image(Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)), "JPEG")


def _png() -> bytes:
    return encode_png(np.arange(64, dtype=np.uint8).reshape(8, 8))


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty_file"),
        (b"just some notes, not an image", "not_an_image"),
        (_png()[:-30], "corrupt_image"),  # truncated PNG
        (_png()[:40] + b"\x00" * 8 + _png()[48:], "corrupt_image"),  # corrupted PNG: zeroed image data
        (_jpeg()[:300], "corrupt_image"),  # truncated JPEG
        (encode_image(Image.fromarray(np.ones((3, 3), np.float32)), "TIFF"), "unsupported_mode"),
        (encode_png(np.zeros((40, 40), np.uint8)), "too_many_pixels"),
        (encode_image(Image.new("L", (40, 40)), "BMP"), "too_many_pixels"),
    ],
    ids=["empty", "text", "truncated-png", "corrupted-png", "truncated-jpeg", "float-tiff", "big-png", "big-bmp"],
)
def test_bad_inputs_are_dead_lettered_with_their_reason(data, reason):
    kept, dead = _validate(data, max_pixels=1000)
    assert kept is None
    assert (dead["id"], dead["stage"], dead["reason"]) == ("x", "preprocess", reason)
    assert dead["error"]


def test_pngs_and_jpegs_pass_as_they_are_and_other_formats_as_png():
    png, jpeg = encode_png(np.zeros((4, 4, 3), np.uint8)), _jpeg()
    assert _validate(png)[0]["image"] is png
    assert _validate(jpeg)[0]["image"] is jpeg
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    for fmt in ("BMP", "GIF", "TIFF"):
        kept, _ = _validate(encode_image(Image.fromarray(pixels), fmt))
        assert kept["image"].startswith(b"\x89PNG"), fmt
        decoded = tf.io.decode_image(kept["image"], channels=3).numpy()
        expected = np.asarray(Image.open(io.BytesIO(encode_image(Image.fromarray(pixels), fmt))).convert("RGB"))
        np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize("make", [split_idat_png, flipped_jpeg], ids=["split-idat-png", "flipped-jpeg"])
def test_images_tensorflow_refuses_are_corrupt_with_the_decoders_message(make):
    data = make()
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(data)
    kept, dead = _validate(data)
    assert kept is None
    assert dead["reason"] == "corrupt_image"
    assert dead["error"].startswith("TensorFlow's decoder: ")
    assert "Invalid" in dead["error"] and "Op:" not in dead["error"] and "function_node" not in dead["error"]


def test_decoded_bytes_are_bounded_before_decoding():
    rgba = encode_png(np.zeros((100, 100, 4), np.uint8))  # 10,000 pixels, 40,000 decoded bytes
    limits = ImageLimits(max_pixels=20_000, max_decoded_bytes=39_999)
    validate = ValidateImagesFn("preprocess", limits)
    (out,) = validate.process([{"id": "x", "label": "", "image": rgba}])
    assert (out.value["reason"], out.value["error"]) == (
        "too_many_pixels",
        "100x100 RGBA decodes to 40000 bytes, over --max-decoded-bytes 39999; shrink the image or raise "
        "--max-decoded-bytes",
    )
    grey = encode_png(np.zeros((100, 100), np.uint8))  # same pixels, a quarter of the bytes
    (kept,) = validate.process([{"id": "x", "label": "", "image": grey}])
    assert kept["image"] is grey


def test_a_png_with_an_exif_orientation_is_re_encoded_upright():
    pixels = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4) * 10
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    data = encode_image(Image.fromarray(pixels), "PNG", exif=exif.tobytes())
    kept, _ = _validate(data)
    assert kept["image"] is not data
    np.testing.assert_array_equal(tf.io.decode_png(kept["image"]).numpy()[..., 0], np.rot90(pixels, -1))


@pytest.mark.parametrize(
    "data, reason, error",
    [
        (b"<html>not a PNG</html>", "not_an_image", "not a PNG, JPEG, GIF, BMP, TIFF or WebP image"),
        (_png()[:20], "corrupt_image", "OSError: Truncated File Read"),
        (_jpeg()[:3] + b"\x00" * 20, "corrupt_image", "starts like an image but its header does not decode"),
    ],
    ids=["text-named-png", "truncated-png-header", "damaged-jpeg-header"],
)
def test_dead_letter_errors_read_as_text_not_python_reprs(data, reason, error):
    _, dead = _validate(data)
    assert dead["reason"] == reason and dead["error"].startswith(error)
    assert "object at 0x" not in dead["error"] and "b'" not in dead["error"]


def test_error_text_drops_object_reprs():
    from PIL import UnidentifiedImageError

    from transforms.errors import error_text

    message = "cannot identify image file <_io.BytesIO object at 0x7f02c1d2a9d0>"
    assert error_text(UnidentifiedImageError(message)) == "UnidentifiedImageError: cannot identify image file the data"
    assert error_text(EOFError()) == "EOFError"


def test_a_batch_keeps_its_good_images_and_dead_letters_only_the_one_the_decoder_refuses():
    good = [encode_png(np.full((8, 8), v, np.uint8)) for v in range(5)]
    records = [{"id": f"{i}.png", "label": "", "image": data} for i, data in enumerate(good)]
    records.insert(2, {"id": "split.png", "label": "", "image": split_idat_png()})
    outputs = list(ValidateImagesFn("preprocess").process(records))
    kept = [out["id"] for out in outputs if not isinstance(out, TaggedOutput)]
    dead = [out.value for out in outputs if isinstance(out, TaggedOutput)]
    assert kept == [f"{i}.png" for i in range(5)]
    assert [(d["id"], d["reason"]) for d in dead] == [("split.png", "corrupt_image")]
    assert dead[0]["error"].startswith("TensorFlow's decoder: Invalid PNG data")


def test_a_second_pass_trusts_the_first_passs_verdicts():
    png, bmp = encode_png(np.zeros((4, 4), np.uint8)), encode_image(Image.new("L", (4, 4), 7), "BMP")
    first = [
        {"id": "good.png", "label": "", "image": png},
        {"id": "split.png", "label": "", "image": split_idat_png()},
        {"id": "grey.bmp", "label": "", "image": bmp},
    ]
    outputs = list(ValidateImagesFn("preprocess").process(first))
    rejected = {out.value["id"] for out in outputs if isinstance(out, TaggedOutput) and out.tag == REJECTED}
    converted = {out.value for out in outputs if isinstance(out, TaggedOutput) and out.tag == CONVERTED}
    assert (rejected, converted) == ({"split.png"}, {"grey.bmp"})
    # The second pass drops what the first rejected, re-encodes what it re-encoded and checks nothing
    # else: a record it never saw passes as it is (the passes read the same files).
    second = [*first, {"id": "unseen", "label": "", "image": b"not checked"}]
    again = list(ValidateImagesFn("preprocess", counted=False, decode=False).process(second, rejected, converted))
    assert [out["id"] for out in again if not isinstance(out, TaggedOutput)] == ["good.png", "grey.bmp", "unseen"]
    kept = {out["id"]: out["image"] for out in again if not isinstance(out, TaggedOutput)}
    assert kept["good.png"] is png and kept["unseen"] == b"not checked"
    np.testing.assert_array_equal(tf.io.decode_png(kept["grey.bmp"]).numpy()[..., 0], np.full((4, 4), 7, np.uint8))


def test_a_png_with_a_broken_chunk_before_its_image_data_is_corrupt_as_pillow_says():
    png = encode_png(np.zeros((4, 4), np.uint8))
    gamma = png_chunk(b"gAMA", bytes(4))
    kept, dead = _validate(png[:33] + gamma[:-4] + bytes(4) + png[33:])
    assert kept is None
    assert dead["reason"] == "corrupt_image"
    assert "gAMA" in dead["error"] or "checksum" in dead["error"] or "header" in dead["error"]


def test_a_batched_validation_gives_the_valid_records_as_one_list_and_the_rest_tagged():
    png, bmp = encode_png(np.zeros((4, 4), np.uint8)), encode_image(Image.new("L", (4, 4), 7), "BMP")
    batch = [
        {"id": "good.png", "label": "", "image": png},
        {"id": "empty.png", "label": "", "image": b""},
        {"id": "grey.bmp", "label": "", "image": bmp},
    ]
    outputs = list(ValidateImagesFn("preprocess", batched=True).process(batch))
    lists = [out for out in outputs if not isinstance(out, TaggedOutput)]
    tagged = {(out.tag, out.value if out.tag == CONVERTED else out.value["id"]) for out in outputs if out not in lists}
    assert len(lists) == 1 and [r["id"] for r in lists[0]] == ["good.png", "grey.bmp"]
    assert lists[0][0]["image"] is png
    assert tagged == {(REJECTED, "empty.png"), (CONVERTED, "grey.bmp")}
    rejected_only = [{"id": "empty.png", "label": "", "image": b""}]
    assert all(
        isinstance(out, TaggedOutput) for out in ValidateImagesFn("preprocess", batched=True).process(rejected_only)
    )
