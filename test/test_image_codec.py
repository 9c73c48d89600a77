"""core.image_codec: byte layouts of every encoding, zero-copy views, conversions with hand-computed
values, and one typed error per malformed case."""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
import pytest
from bad_images import corrupt_jpegs, forged_jpeg, forged_png, png_bomb

from refine_perception.core.image_codec import (
    ENCODINGS,
    MAX_IMAGE_PIXELS,
    CompressedFormat,
    ImageFormatError,
    RawImage,
    compressed_format,
    decode_compressed,
    decode_raw,
    encode_compressed,
    encode_raw,
    parse_compressed_format,
)

RNG = np.random.default_rng(7)
BAYER = ("bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
YUV = ("yuv422", "yuv422_yuy2")


def natural_array(encoding: str, height: int = 4, width: int = 6) -> np.ndarray:
    """Random pixels in the passthrough layout of encoding."""
    spec = ENCODINGS[encoding]
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    return RNG.integers(0, 256**spec.depth, shape, dtype=np.uint16 if spec.depth == 2 else np.uint8)


def decode(raw: RawImage, desired: str = "passthrough") -> np.ndarray:
    return decode_raw(raw.data, raw.height, raw.width, raw.encoding, raw.step, raw.is_bigendian, desired)


def padded(raw: RawImage, pad: int) -> bytes:
    """The rows of raw with pad filler bytes after each, as a driver with aligned rows sends them."""
    rows = np.frombuffer(raw.data, np.uint8).reshape(raw.height, raw.step)
    return np.hstack([rows, np.full((raw.height, pad), 0xEE, np.uint8)]).tobytes()


def pair_image(height: int = 6, width: int = 8) -> np.ndarray:
    """BGR pixels equal in horizontal pairs: what 4:2:2 chroma subsampling keeps without loss."""
    return np.repeat(RNG.integers(0, 256, (height, width // 2, 3), dtype=np.uint8), 2, axis=1)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_passthrough_round_trip_is_exact_and_copies_nothing(encoding):
    image = natural_array(encoding)
    raw = encode_raw(image, encoding)
    spec = ENCODINGS[encoding]
    assert (raw.height, raw.width, raw.step, raw.encoding) == (4, 6, 6 * spec.bytes_per_pixel, encoding)
    assert raw.is_bigendian == (spec.depth == 2 and sys.byteorder == "big")
    assert np.shares_memory(np.frombuffer(raw.data, np.uint8), image)
    out = decode(raw)
    assert out.dtype == image.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, image)
    assert np.shares_memory(out, image)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_row_padding_is_skipped_without_a_copy(encoding):
    image = natural_array(encoding)
    raw = encode_raw(image, encoding)
    data = padded(raw, 6)
    out = decode_raw(data, raw.height, raw.width, encoding, raw.step + 6, raw.is_bigendian)
    np.testing.assert_array_equal(out, image)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8))
    converted = decode_raw(data, raw.height, raw.width, encoding, raw.step + 6, raw.is_bigendian, "bgr8")
    np.testing.assert_array_equal(converted, decode(raw, "bgr8"))


def test_every_buffer_type_rclpy_or_a_driver_may_hand_over_is_viewed_not_copied():
    image = natural_array("bgr8")
    payload = image.tobytes()
    for data in (payload, bytearray(payload), memoryview(payload), array.array("B", payload), image.reshape(-1)):
        out = decode_raw(data, 4, 6, "bgr8", 18)
        np.testing.assert_array_equal(out, image)
        assert np.shares_memory(out, np.frombuffer(data, np.uint8)), type(data).__name__


@pytest.mark.parametrize(("encoding", "desired"), [("bgr8", "bgr8"), ("8UC3", "bgr8"), ("8UC1", "mono8"),
                                                   ("16UC1", "mono16"), ("rgb8", "rgb8")])
def test_asking_for_the_layout_the_data_has_costs_nothing(encoding, desired):
    raw = encode_raw(natural_array(encoding), encoding)
    out = decode(raw, desired)
    assert np.shares_memory(out, np.frombuffer(raw.data, np.uint8))


def test_channel_orders_by_hand():
    rgb = bytes([1, 2, 3, 4, 5, 6])  # two pixels: (R, G, B) = (1, 2, 3) and (4, 5, 6)
    np.testing.assert_array_equal(decode_raw(rgb, 1, 2, "rgb8", 6, desired="bgr8"), [[[3, 2, 1], [6, 5, 4]]])
    rgba = bytes([10, 20, 30, 40])
    np.testing.assert_array_equal(decode_raw(rgba, 1, 1, "rgba8", 4, desired="bgr8"), [[[30, 20, 10]]])
    np.testing.assert_array_equal(decode_raw(rgba, 1, 1, "bgra8", 4, desired="rgb8"), [[[30, 20, 10]]])
    np.testing.assert_array_equal(decode_raw(bytes([9]), 1, 1, "mono8", 1, desired="rgb8"), [[[9, 9, 9]]])
    # Grey = 0.299 R + 0.587 G + 0.114 B: pure red 255 -> 76.2, pure green -> 149.7, pure blue -> 29.1.
    bgr = bytes([0, 0, 255, 0, 255, 0, 255, 0, 0])
    np.testing.assert_array_equal(decode_raw(bgr, 1, 3, "bgr8", 9, desired="mono8"), [[76, 150, 29]])
    alpha = encode_raw(np.array([[[1, 2, 3]]], np.uint8), "bgra8", "bgr8")
    assert bytes(alpha.data) == bytes([1, 2, 3, 255]) and alpha.step == 4


def test_mono16_byte_order_by_hand():
    data = bytes([0x01, 0x02, 0x03, 0x04])
    little = decode_raw(data, 1, 2, "mono16", 4, is_bigendian=False)
    big = decode_raw(data, 1, 2, "mono16", 4, is_bigendian=True)
    np.testing.assert_array_equal(little, [[0x0201, 0x0403]])
    np.testing.assert_array_equal(big, [[0x0102, 0x0304]])
    assert big.dtype == np.uint16 and big.dtype.isnative and not np.shares_memory(big, np.frombuffer(data, np.uint8))
    # A big-endian array goes out as it is, flagged big-endian.
    raw = encode_raw(np.array([[0x0102, 0x0304]], ">u2"), "mono16")
    assert raw.is_bigendian and bytes(raw.data) == data
    np.testing.assert_array_equal(decode(raw), [[0x0102, 0x0304]])


def test_mono16_and_mono8_scale_into_each_other():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    wide = decode(encode_raw(values, "mono16", "mono8"))
    assert wide[0, 0] == 0 and wide[-1, -1] == 65535 and wide[0, 1] == 257
    np.testing.assert_array_equal(decode(encode_raw(wide, "mono16"), "mono8"), values)
    np.testing.assert_array_equal(decode_raw(bytes([0xFF, 0x12]), 1, 1, "mono16", 2, desired="mono8"), [[0x12]])


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_encoding_converts_to_every_other(encoding):
    raw = encode_raw(pair_image(4, 6), encoding, "bgr8")
    for desired in ENCODINGS:
        spec = ENCODINGS[desired]
        out = decode(raw, desired)
        assert out.shape[2:] == ((spec.channels,) if spec.channels > 1 else ()) and out.shape[:2] == (4, 6)
        assert out.dtype.itemsize == spec.depth, desired


def test_yuv422_byte_orders_and_bt601_studio_swing_by_hand():
    black_white = [[[0, 0, 0], [255, 255, 255]]]  # Y = 16 is black, Y = 235 white, U = V = 128 no colour
    np.testing.assert_array_equal(decode_raw(bytes([128, 16, 128, 235]), 1, 2, "yuv422", 4, desired="bgr8"),
                                  black_white)
    np.testing.assert_array_equal(decode_raw(bytes([16, 128, 235, 128]), 1, 2, "yuv422_yuy2", 4, desired="bgr8"),
                                  black_white)
    # Pure red, BT.601 studio swing: Y = 16 + 0.257*255 = 81.5, U = 128 - 0.148*255 = 90.3,
    # V = 128 + 0.439*255 = 239.9.
    red = np.array([[[0, 0, 255], [0, 0, 255]]], np.uint8)
    assert bytes(encode_raw(red, "yuv422", "bgr8").data) == bytes([90, 82, 240, 82])  # U Y0 V Y1
    assert bytes(encode_raw(red, "yuv422_yuy2", "bgr8").data) == bytes([82, 90, 82, 240])  # Y0 U Y1 V


@pytest.mark.parametrize("encoding", YUV)
def test_yuv422_round_trip_loses_only_rounding(encoding):
    image = pair_image()
    raw = encode_raw(image, encoding, "bgr8")
    back = decode(raw, "bgr8")
    assert np.abs(back.astype(int) - image).max() <= 2
    again = encode_raw(back, encoding, "bgr8")
    assert np.abs(np.frombuffer(again.data, np.uint8).astype(int) - np.frombuffer(raw.data, np.uint8)).max() <= 1


@pytest.mark.parametrize("encoding", BAYER)
def test_bayer_mosaic_samples_the_pattern_by_hand(encoding):
    pattern = encoding[6:10].upper()
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)  # pixel (y, x) channel c holds 6y + 3x + c
    channel = {"B": 0, "G": 1, "R": 2}
    expected = [[6 * y + 3 * x + channel[pattern[2 * y + x]] for x in range(2)] for y in range(2)]
    np.testing.assert_array_equal(decode(encode_raw(image, encoding, "bgr8")), expected)


@pytest.mark.parametrize("encoding", BAYER)
def test_bayer_demosaic_puts_colours_where_the_pattern_says(encoding):
    solid = np.empty((6, 8, 3), np.uint8)
    solid[:] = (10, 120, 250)  # a wrong pattern mapping would swap red and blue
    np.testing.assert_array_equal(decode(encode_raw(solid, encoding, "bgr8"), "bgr8"), solid)


@pytest.mark.parametrize("encoding", BAYER)
def test_bayer_demosaic_keeps_every_sample_inside_the_border(encoding):
    mosaic = natural_array(encoding, 10, 12)
    colour = decode(encode_raw(mosaic, encoding), "bgr8")
    again = decode(encode_raw(colour, encoding, "bgr8"))
    np.testing.assert_array_equal(again[1:-1, 1:-1], mosaic[1:-1, 1:-1])


GOOD = dict(data=bytes(60), height=4, width=5, encoding="bgr8", step=15)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(encoding="bgr9000"), r"unknown encoding 'bgr9000'; supported: bgr8, rgb8"),
        (dict(height=0, data=b""), r"no pixels: height=0 width=5"),
        (dict(width=-3), r"no pixels: height=4 width=-3"),
        (dict(step=14, data=bytes(56)), r"step=14 is smaller than width\*bytes_per_pixel = 5\*3 = 15 for bgr8"),
        (dict(data=bytes(59)), r"data has 59 bytes but height\*step = 4\*15 = 60"),
        (dict(data=bytes(61)), r"data has 61 bytes but height\*step = 4\*15 = 60"),
        (dict(encoding="yuv422", step=10, data=bytes(40)), r"yuv422 packs pixels in pairs.*got width=5"),
        (dict(desired="bgr9"), r"unknown desired encoding 'bgr9'; supported: passthrough, bgr8"),
        (dict(data=[0] * 60), r"bytes-like buffer, got list"),
        (dict(data=np.zeros(60, np.float32)), r"uint8 bytes, got an array of float32"),
        (dict(data=array.array("H", bytes(60))), r"items of 2 bytes"),
    ],
)
def test_malformed_image_fields_raise_one_typed_error_that_names_them(change, message):
    with pytest.raises(ImageFormatError, match=message):
        decode_raw(**{**GOOD, **change})


@pytest.mark.parametrize(
    ("image", "encoding", "source", "message"),
    [
        (np.zeros((4, 5, 3), np.float32), "bgr8", None, r"bgr8 needs an H×W×3 array of uint8, got dtype float32"),
        (np.zeros((4, 5), np.uint8), "bgr8", None, r"got shape \(4, 5\)"),
        (np.zeros((4, 5, 3), np.uint8), "mono16", None, r"mono16 needs an H×W array of uint16, got dtype uint8"),
        (np.zeros((0, 5, 3), np.uint8), "bgr8", None, r"no pixels: height=0 width=5"),
        (np.zeros((4, 5, 3), np.uint8), "yuv422", "bgr8", r"width must be even; got width=5"),
        (np.zeros((4, 6, 3), np.uint8), "bgr9", None, r"unknown encoding 'bgr9'"),
        (np.zeros((4, 6, 3), np.uint8), "mono8", "brg8", r"unknown source encoding 'brg8'"),
        ([[0, 0]], "mono8", None, r"must be a numpy array, got list"),
    ],
)
def test_malformed_arrays_raise_a_typed_error_on_encoding(image, encoding, source, message):
    with pytest.raises(ImageFormatError, match=message):
        encode_raw(image, encoding, source)


def smooth_image(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["jpeg", "JPEG", "jpg", "", "bgr8; jpeg compressed bgr8"])
def test_jpeg_round_trip_within_compression_error(fmt):
    image = smooth_image()
    out = decode_compressed(encode_compressed(image, "jpeg", 95), fmt)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() < 1.5


@pytest.mark.parametrize(("image", "fmt"), [
    (smooth_image(), "bgr8; png compressed bgr8"),
    (smooth_image()[..., 0], "mono8; png compressed mono8"),
    (smooth_image()[..., 0].astype(np.uint16) * 1000, "mono16; png compressed mono16"),
    (smooth_image()[..., 0].astype(np.uint16) * 1000, "png"),
])
def test_png_round_trip_is_exact(image, fmt):
    np.testing.assert_array_equal(decode_compressed(encode_compressed(image, "png"), fmt, "passthrough"), image)


def test_format_field_restores_the_original_encoding_like_image_transport():
    rgb = smooth_image()[..., ::-1].copy()
    data = encode_compressed(rgb, "png", source_encoding="rgb8")
    fmt = compressed_format("png", "rgb8")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(decode_compressed(data, fmt, "passthrough"), rgb)
    np.testing.assert_array_equal(decode_compressed(data, fmt, "bgr8"), smooth_image())
    # An older publisher that compressed RGB pixels as they were says so; the channels come back right.
    swapped = cv2.imencode(".png", rgb)[1].tobytes()
    np.testing.assert_array_equal(decode_compressed(swapped, "rgb8; png compressed rgb8", "bgr8"), smooth_image())
    assert compressed_format("jpeg", "mono8") == "mono8; jpeg compressed mono8"
    assert compressed_format("png", "mono16") == "mono16; png compressed mono16"


def test_mono8_from_jpeg_matches_the_grey_of_the_colour_decode():
    data = encode_compressed(smooth_image(), "jpeg", 95)
    grey = decode_compressed(data, "jpeg", "mono8")
    colour = decode_compressed(data, "jpeg", "bgr8")
    assert grey.shape == (48, 64)
    assert np.abs(grey.astype(int) - cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)).max() <= 2


@pytest.mark.parametrize(("fmt", "parsed"), [
    ("jpeg", CompressedFormat("jpeg", None, None)),
    (" PNG ", CompressedFormat("png", None, None)),
    ("", CompressedFormat(None, None, None)),
    ("rgb8; jpeg compressed bgr8", CompressedFormat("jpeg", "rgb8", "bgr8")),
    ("mono8; jpeg compressed ", CompressedFormat("jpeg", "mono8", None)),
    ("16UC1; png compressed mono16", CompressedFormat("png", "16UC1", "mono16")),
])
def test_compressed_format_field_parsing(fmt, parsed):
    assert parse_compressed_format(fmt) == parsed


def jpeg_bytes() -> bytes:
    return encode_compressed(smooth_image(16, 16), "jpeg")


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (jpeg_bytes()[: len(jpeg_bytes()) // 2], "jpeg", r"truncated JPEG: the \d+ bytes do not end with the EOI"),
        (jpeg_bytes()[:-2], "jpeg", r"truncated JPEG"),  # only the EOI marker missing
        (b"definitely not a jpeg", "jpeg", r"not a JPEG: .*SOI marker ff d8 \(starts 64 65 66"),
        (b"\xff\xd8\xff" + bytes(range(1, 200)) + b"\xff\xd9", "jpeg", r"corrupt JPEG header \(204 bytes\): libjpeg: "),
        (b"", "jpeg", r"data is empty"),
        (encode_compressed(smooth_image(), "png")[:-40], "png", r"truncated PNG"),
        (jpeg_bytes(), "png", r"not a PNG"),
        (b"GIF89a....", "", r"neither JPEG nor PNG \(starts 47 49 46"),
        (jpeg_bytes(), "bgr8; tiff compressed bgr8", r"unknown CompressedImage format"),
        (jpeg_bytes(), "16UC1; compressedDepth png", r"compressedDepth .* not supported"),
        (jpeg_bytes(), "bgr8; jpeg compressed yuv422", r"compressed layout 'yuv422' is not supported"),
        (cv2.imencode(".png", np.zeros((4, 4, 3), np.uint16))[1].tobytes(), "png", r"3 channels of uint16"),
    ],
)
def test_malformed_compressed_images_raise_a_typed_error(data, fmt, message):
    with pytest.raises(ImageFormatError, match=message):
        decode_compressed(data, fmt)


@pytest.mark.parametrize(
    ("image", "fmt", "quality", "message"),
    [
        (np.zeros((4, 4), np.uint16), "jpeg", 90, r"JPEG holds 8-bit images only"),
        (np.zeros((4, 4, 3), np.uint8), "jpeg", 0, r"quality must be within 1..100, got 0"),
        (np.zeros((4, 4, 3), np.uint8), "gif", 90, r"unknown compression format 'gif'"),
        (np.zeros((4, 4, 2), np.uint8), "png", 90, r"bgr8 needs an H×W×3 array of uint8, got shape \(4, 4, 2\)"),
    ],
)
def test_unencodable_images_raise_a_typed_error(image, fmt, quality, message):
    with pytest.raises(ImageFormatError, match=message):
        encode_compressed(image, fmt, quality)


CORRUPT_JPEGS = corrupt_jpegs()


@pytest.mark.parametrize("desired", ["bgr8", "mono8"])
@pytest.mark.parametrize("damage", list(CORRUPT_JPEGS))
def test_jpeg_with_damaged_scan_data_is_refused_instead_of_decoded_with_a_warning(damage, desired):
    # OpenCV's imdecode returns a picture for each of these, printing libjpeg's warning to stderr only.
    with pytest.raises(ImageFormatError, match=r"corrupt JPEG \(\d+ bytes\): libjpeg: Corrupt JPEG data: "
                                               r"(premature end of data segment|\d+ extraneous bytes before marker)"):
        decode_compressed(CORRUPT_JPEGS[damage], "jpeg", desired)


def test_jpeg_decoding_matches_opencv_pixel_for_pixel():
    """The strict JPEG decoder is libjpeg-turbo with the settings OpenCV uses: the same pixels."""
    image = cv2.GaussianBlur(RNG.integers(0, 256, (61, 83, 3), dtype=np.uint8), (5, 5), 2)
    for data in (encode_compressed(image, "jpeg", 90), encode_compressed(image[..., 1], "jpeg", 90)):
        buffer = np.frombuffer(data, np.uint8)
        np.testing.assert_array_equal(decode_compressed(data, "jpeg", "passthrough"),
                                      cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED))
        np.testing.assert_array_equal(decode_compressed(data, "jpeg", "mono8"),
                                      cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION))


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (png_bomb(20000, 20000), "png", r"PNG of 20000x20000 = 400000000 pixels"),
        (forged_png(60000, 60000), "png", r"PNG of 60000x60000 = 3600000000 pixels"),
        (forged_png(2**31 - 1, 2**31 - 1), "", r"PNG of 2147483647x2147483647 = \d+ pixels"),
        (forged_jpeg(30000, 20000), "jpeg", r"JPEG of 30000x20000 = 600000000 pixels"),
    ],
    ids=["real 20000x20000 PNG bomb", "PNG header claiming 60000x60000", "PNG header claiming 2^31-1 squared",
         "JPEG header claiming 30000x20000"],
)
def test_compressed_image_claiming_too_many_pixels_is_refused_from_its_header(data, fmt, message):
    with pytest.raises(ImageFormatError, match=message + rf" exceeds max_image_pixels = {MAX_IMAGE_PIXELS}"):
        decode_compressed(data, fmt)


def test_the_pixel_limit_is_a_parameter_that_a_12_megapixel_camera_passes_by_default():
    frame = np.zeros((3000, 4000, 3), np.uint8)
    for fmt in ("jpeg", "png"):
        data = encode_compressed(frame, fmt)
        assert decode_compressed(data, fmt).shape == (3000, 4000, 3)
        assert decode_compressed(data, fmt, max_pixels=12_000_000).shape == (3000, 4000, 3)
        with pytest.raises(ImageFormatError, match=r"of 4000x3000 = 12000000 pixels exceeds max_image_pixels = "
                                                   r"11999999"):
            decode_compressed(data, fmt, max_pixels=11_999_999)
    raw = encode_raw(frame, "bgr8")
    assert decode(raw).shape == (3000, 4000, 3)
    with pytest.raises(ImageFormatError, match=r"bgr8 image of 4000x3000 = 12000000 pixels exceeds "
                                               r"max_image_pixels = 11999999"):
        decode_raw(raw.data, raw.height, raw.width, raw.encoding, raw.step, max_pixels=11_999_999)


def test_png_without_its_header_chunk_is_malformed():
    data = bytearray(encode_compressed(smooth_image(), "png"))
    data[12:16] = b"IHDX"
    with pytest.raises(ImageFormatError, match=r"PNG does not start with its IHDR chunk"):
        decode_compressed(bytes(data), "png")
