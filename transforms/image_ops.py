"""TensorFlow image ops used inside the tf.Transform graph (and so inside the exported model).

Element contract: :func:`decode_pixels` is the one decoder: encoded bytes -> the image with its own
channels, upright; validation runs it eagerly to prove each image (so a file the graph would refuse
is dead-lettered with this decoder's message, :func:`decoder_message`), the graph runs it on every
record. ``decode_images`` takes a rank-1 batch of encoded image strings (PNG, 8- or
16-bit, any colour type; JPEG; BMP; GIF, first frame) and returns float32
``(batch, height, width, channels)`` pixels in [0, 1]. The target shape, the resize policy and the
background colour come from an :class:`ImageSpec`; nothing here hard-codes a shape.

Colour policy: every image is decoded with its own channels (grey, grey+alpha, RGB, RGBA; palettes
expand to RGB or RGBA), alpha is composited on ``background``, then the result is brought to the
target channels: grey is repeated to RGB, RGB becomes grey with ITU-R BT.601 luma weights. A grey
image with a 1-channel target is never touched, so grey data stays exact.

Orientation: a JPEG's EXIF Orientation tag (0x0112, in its APP1 segment) is honoured as Pillow's
``ImageOps.exif_transpose`` does, so a phone photo is trained and served the way viewers show it.
The tag is parsed with tensor ops (no Python), so the exported model does the same; a missing or
unreadable tag means "upright". Other formats' EXIF is applied by Pillow when validation re-encodes them.
"""

from __future__ import annotations

import re

import tensorflow as tf

from transforms.corruption import BLOCK_FRACTION, CorruptionSpec
from transforms.image_spec import ImageSpec

# ITU-R BT.601 luma, the weights of tf.image.rgb_to_grayscale.
_LUMA = (0.2989, 0.5870, 0.1140)


def _background(spec: ImageSpec) -> tf.Tensor:
    """The background in the target channels, float in [0, 1]: shape ``(channels,)``."""
    rgb = tf.constant(spec.background, tf.float32) / 255.0
    return rgb if spec.channels == 3 else tf.reduce_sum(rgb * _LUMA, keepdims=True)


def _to_channels(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """float HxWxK (K = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) -> HxWxC of the spec, alpha composited."""
    background = _background(spec)

    def colour(pixels):  # grey or RGB, no alpha -> target channels
        if pixels.shape[-1] == spec.channels:
            return pixels
        return tf.image.rgb_to_grayscale(pixels) if spec.channels == 1 else tf.tile(pixels, [1, 1, 3])

    def composite(pixels):  # grey+alpha or RGBA -> target channels on the background
        alpha = pixels[..., -1:]
        return colour(pixels[..., :-1]) * alpha + background * (1.0 - alpha)

    def branch(channels):
        fn = colour if channels in (1, 3) else composite
        return lambda: fn(tf.ensure_shape(image, [None, None, channels]))

    # Nested conds, not tf.switch_case: tf.Transform cannot fingerprint switch_case's branch list.
    found = tf.shape(image)[-1]
    return tf.cond(
        tf.equal(found, 1),
        branch(1),
        lambda: tf.cond(tf.equal(found, 2), branch(2), lambda: tf.cond(tf.equal(found, 3), branch(3), branch(4))),
    )


def _fit(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Brings one float HxWxC image to the spec's size with its resize policy."""
    size = (spec.height, spec.width)
    if spec.resize == "pad":
        background = _background(spec)  # resize_with_pad pads with 0: shift so 0 is the background
        return tf.image.resize_with_pad(image - background, *size) + background
    if spec.resize == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.reduce_max(tf.constant(size, tf.float32) / shape)
        scaled = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        return tf.image.resize_with_crop_or_pad(tf.image.resize(image, scaled), *size)
    return tf.image.resize(image, size)


# APP segments are at most 64 KiB: the EXIF Orientation tag, when present, is within these bytes.
_EXIF_SCAN_BYTES = 2 + 16 * (65536 + 2)
_MAX_SEGMENTS = 16
_MAX_IFD_ENTRIES = 256
_ORIENTATION_TAG = 0x0112


def exif_orientation(encoded: tf.Tensor) -> tf.Tensor:
    """A scalar int32 in 1..8: the EXIF Orientation of a JPEG (1 when absent, unreadable or not a JPEG).

    Walks the JPEG's marker segments up to the first APP1 ``Exif`` one, then the TIFF header and
    IFD0's entries; every read is bounds-checked, so damaged EXIF data only means "upright".
    """
    head = tf.io.decode_raw(tf.strings.substr(encoded, 0, _EXIF_SCAN_BYTES), tf.uint8)
    size = tf.size(head)
    data = tf.concat([tf.cast(head, tf.int32), tf.zeros([16], tf.int32)], 0)

    def byte(i):
        return tf.where(i < size, tf.gather(data, tf.clip_by_value(i, 0, size)), 0)

    def u16(i, little):
        return tf.where(little, byte(i) + 256 * byte(i + 1), 256 * byte(i) + byte(i + 1))

    def u32(i, little):
        return tf.where(
            little, u16(i, little) + 65536 * u16(i + 2, little), 65536 * u16(i, little) + u16(i + 2, little)
        )

    exif_header = tf.constant([0x45, 0x78, 0x69, 0x66, 0, 0])  # "Exif\0\0"

    def is_exif_app1(pos):
        marker_ok = tf.logical_and(tf.equal(byte(pos), 0xFF), tf.equal(byte(pos + 1), 0xE1))
        return tf.logical_and(
            marker_ok,
            tf.reduce_all(tf.equal(tf.gather(data, tf.clip_by_value(pos + 4 + tf.range(6), 0, size)), exif_header)),
        )

    def segment_continues(pos, found):
        marker = byte(pos + 1)
        in_header = tf.logical_and(tf.equal(byte(pos), 0xFF), tf.logical_and(marker != 0xDA, marker != 0xD9))
        return tf.logical_and(tf.logical_and(found < 0, pos + 4 <= size), in_header)

    def next_segment(pos, found):
        found = tf.where(is_exif_app1(pos), pos + 10, found)
        return pos + 2 + u16(pos + 2, False), found

    is_jpeg = tf.logical_and(tf.equal(byte(0), 0xFF), tf.equal(byte(1), 0xD8))
    _, tiff = tf.while_loop(
        segment_continues, next_segment, (tf.constant(2), tf.where(is_jpeg, -1, 0)), maximum_iterations=_MAX_SEGMENTS
    )
    tiff = tf.maximum(tiff, 0)  # 0: no EXIF found (a JPEG never starts with a TIFF header)
    little = tf.equal(byte(tiff), 0x49)
    valid = tf.logical_and(tiff > 0, tf.equal(u16(tiff + 2, little), 42))
    ifd = tiff + u32(tiff + 4, little)
    entries = tf.minimum(u16(ifd, little), _MAX_IFD_ENTRIES)

    def orientation_of(i, found):
        entry = ifd + 2 + 12 * i
        return i + 1, tf.where(tf.equal(u16(entry, little), _ORIENTATION_TAG), u16(entry + 8, little), found)

    _, orientation = tf.while_loop(
        lambda i, found: tf.logical_and(i < entries, found == 0), orientation_of, (tf.constant(0), tf.constant(0))
    )
    ok = tf.logical_and(valid, tf.logical_and(orientation >= 1, orientation <= 8))
    return tf.where(ok, orientation, 1)


def _orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Applies an EXIF orientation (1..8) as ``ImageOps.exif_transpose`` does: a transpose for 5..8,
    then a left-right flip for 2, 3, 6, 7 and an upside-down flip for 3, 4, 7, 8."""

    def when(condition, fn, pixels):
        return tf.cond(condition, lambda: fn(pixels), lambda: pixels)

    def is_in(values):
        return tf.reduce_any(tf.equal(orientation, values))

    image = when(orientation >= 5, lambda x: tf.transpose(x, [1, 0, 2]), image)
    image = when(is_in([2, 3, 6, 7]), lambda x: tf.reverse(x, [1]), image)
    return when(is_in([3, 4, 7, 8]), lambda x: tf.reverse(x, [0]), image)


def _decode(encoded: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """The op that decodes (and the only one of :func:`decode_pixels` that can fail)."""
    return tf.io.decode_image(encoded, channels=0, dtype=dtype, expand_animations=False)


def _is_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """True where the encoded image is a JPEG (the only format whose EXIF orientation the graph reads)."""
    return tf.equal(tf.strings.substr(encoded, 0, 2), b"\xff\xd8")


def _upright(image: tf.Tensor, encoded: tf.Tensor) -> tf.Tensor:
    return _orient(image, exif_orientation(encoded))


def decode_pixels(encoded: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """The one decoder (see the module docstring): one encoded image -> ``(H, W, K)`` pixels of
    ``dtype`` (floats in [0, 1]) with the image's own channels K, turned upright by its EXIF orientation.

    Raises:
      tf.errors.InvalidArgumentError: the bytes do not decode (eagerly; in a graph, when run).
    """
    image = _decode(encoded, dtype)
    return tf.cond(_is_jpeg(encoded), lambda: _upright(image, encoded), lambda: image)


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def decoded_shapes(encoded: tf.Tensor) -> tf.Tensor:
    """Proves that a batch of encoded images decodes, one image at a time: ``(batch,)`` -> the
    ``(batch, 3)`` stored shapes (H, W, K). Compiled once per process: one call per batch costs what
    one call per image cost (about 0.5 ms), so validation pays the decode, not the call.

    Raises:
      tf.errors.InvalidArgumentError: an image of the batch does not decode (decode them one by one
        to find which).
    """
    return tf.map_fn(
        lambda e: tf.shape(_decode(e, tf.uint8)),
        encoded,
        fn_output_signature=tf.TensorSpec([3], tf.int32),
        parallel_iterations=1,
    )


_TF_NOISE = (
    re.compile(r"^(?:\w+\.)+(?=\w+: )"),  # the exception's module path
    re.compile(r"\{\{function_node [^}]*\}\}\s*"),
    re.compile(r"\s*\[Op:[^\]]*\]( name: \S*)?"),
    re.compile(r"\s*\[\[\{\{node [^\]]*\]\]"),
    re.compile(r"Graph execution error:\s*"),
    re.compile(r"Detected at node \S+ defined at \(most recent call last\):.*?(?=\n\S)\n", re.S),
)


def decoder_message(error: BaseException | str) -> str:
    """The decoder's own words from a TensorFlow error (or its text): ``"Invalid PNG data, size 102"``
    rather than the op and graph node decorations around it."""
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    for pattern in _TF_NOISE:
        text = pattern.sub("", text)
    return " ".join(text.split()) or type(error).__name__


def _to_spec(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """One decoded float image -> the spec's channels and shape, in [0, 1].

    An image that already has the spec's shape (the usual case: its channels and size) is passed on
    with one branch; the channel and size branches it would pass through unchanged cost about 10 us
    more an image (a 28x28 PNG decodes in about 30 us inside the loop).
    """

    def converted():
        pixels = _to_channels(image, spec)
        same_size = tf.reduce_all(tf.equal(tf.shape(pixels)[:2], [spec.height, spec.width]))
        return tf.cond(same_size, lambda: pixels, lambda: tf.clip_by_value(_fit(pixels, spec), 0.0, 1.0))

    as_is = tf.reduce_all(tf.equal(tf.shape(image), spec.shape))
    return tf.ensure_shape(tf.cond(as_is, lambda: image, converted), spec.shape)


def decode_images(encoded: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Decodes a batch of encoded images (:func:`decode_pixels`, then the spec's channels and size):
    ``(batch,)`` string -> ``(batch, H, W, C)`` float32.

    JPEGs and the other images are decoded apart and put back in order, so only JPEGs run the EXIF
    ops and no image pays for a branch between the two (a branch inside the loop cost about 40 us
    an image, more than decoding a small PNG). One image at a time (``parallel_iterations=1``): a
    full-size decode and its float copies are the largest tensors of the graph, so decoding several
    at once would multiply the peak memory.
    """
    encoded = tf.reshape(encoded, [-1])
    jpeg = tf.cast(_is_jpeg(encoded), tf.int32)
    others, jpegs = tf.dynamic_partition(encoded, jpeg, 2)
    positions = tf.dynamic_partition(tf.range(tf.size(encoded)), jpeg, 2)

    def each(images, decode):
        return tf.map_fn(
            lambda e: _to_spec(decode(e), spec),
            images,
            fn_output_signature=tf.TensorSpec(spec.shape, tf.float32),
            parallel_iterations=1,
        )

    decoded = [
        each(others, lambda e: _decode(e, tf.float32)),
        each(jpegs, lambda e: _upright(_decode(e, tf.float32), e)),
    ]
    return tf.ensure_shape(tf.dynamic_stitch(positions, decoded), (None, *spec.shape))


def grey(images: tf.Tensor) -> tf.Tensor:
    """RGB images ``(..., H, W, 3)`` -> their luma (ITU-R BT.601) in each of the 3 channels."""
    return tf.tile(tf.image.rgb_to_grayscale(images), [1] * (images.shape.rank - 1) + [3])


def bicubic_resize(images: tf.Tensor, size) -> tf.Tensor:
    """Images resized to ``size`` (height, width) with bicubic interpolation, clipped to [0, 1]
    (bicubic overshoots at edges)."""
    return tf.clip_by_value(tf.image.resize(images, size, method="bicubic"), 0.0, 1.0)


def shrink(images: tf.Tensor, factor: int) -> tf.Tensor:
    """Images ``(batch, H, W, C)`` of a static size shrunk by ``factor`` with area averaging
    (``H // factor`` by ``W // factor``): what ``downscale:F`` starts from."""
    return tf.image.resize(images, (images.shape[1] // factor, images.shape[2] // factor), method="area")


def bicubic_to_size(encoded: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """One encoded image brought up to ``height`` x ``width`` with bicubic interpolation when it is
    smaller (no larger on either side, smaller on one), re-encoded as a 16-bit PNG (upright, its own
    channels); any other image as it is. What an upscaling model's export does before its transform,
    whose resize policy would otherwise stretch small images bilinearly."""
    pixels = decode_pixels(encoded)
    size = tf.shape(pixels)[:2]
    smaller = tf.logical_and(tf.reduce_all(size <= [height, width]), tf.reduce_any(size < [height, width]))

    def upscaled():
        resized = bicubic_resize(pixels[None], (height, width))[0]
        return tf.io.encode_png(tf.cast(tf.round(resized * 65535.0), tf.uint16))

    return tf.cond(smaller, upscaled, lambda: encoded)


def corrupt(images: tf.Tensor, spec: CorruptionSpec, seed: int | None = None) -> tf.Tensor:
    """Applies the corruption ``spec`` (see ``transforms.corruption``) to a batch of [0, 1] images
    ``(batch, H, W, C)`` with a static size; returns the same shape, in [0, 1]."""
    shape = tf.shape(images)
    height, width = images.shape[1], images.shape[2]
    if spec.kind == "gaussian":
        noisy = images + tf.random.normal(shape, stddev=spec.amount, seed=seed, dtype=images.dtype)
    elif spec.kind == "mask":
        keep = tf.cast(tf.random.uniform(shape, seed=seed) >= spec.amount, images.dtype)
        noisy = images * keep
    elif spec.kind == "salt-pepper":
        draw = tf.random.uniform(shape, seed=seed)
        salt = tf.cast(draw < spec.amount / 2, images.dtype)
        pepper = draw < spec.amount
        noisy = tf.where(pepper, salt, images)
    elif spec.kind == "grey":
        noisy = grey(images)
    elif spec.kind == "downscale":
        noisy = bicubic_resize(shrink(images, int(spec.amount)), (height, width))
    else:  # blocks
        side = max(1, round(min(height, width) * BLOCK_FRACTION))
        grid = (-(-height // side), -(-width // side))
        keep = tf.cast(tf.random.uniform([shape[0], *grid, 1], seed=seed) >= spec.amount, images.dtype)
        keep = tf.repeat(tf.repeat(keep, side, axis=1), side, axis=2)[:, :height, :width]
        noisy = images * keep
    return tf.clip_by_value(noisy, 0.0, 1.0)
