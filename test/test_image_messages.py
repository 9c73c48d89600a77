"""ros.image_messages on real sensor_msgs messages, through rclpy's CDR serialization and back, as a
publisher and a subscriber in two processes would see them."""

from __future__ import annotations

import array

import numpy as np
import pytest
from bad_images import corrupt_jpegs, png_bomb
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from refine_perception.core.image_codec import ENCODINGS, MAX_IMAGE_PIXELS, ImageFormatError
from refine_perception.ros.image_messages import (
    compressed_to_numpy,
    image_to_numpy,
    numpy_to_compressed,
    numpy_to_image,
    to_bgr,
)

RNG = np.random.default_rng(11)


def over_the_wire(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def header() -> Header:
    h = Header(frame_id="camera_optical_frame")
    h.stamp.sec, h.stamp.nanosec = 1_700_000_000, 123_456_789
    return h


def natural_array(encoding: str, height: int = 6, width: int = 8) -> np.ndarray:
    spec = ENCODINGS[encoding]
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    return RNG.integers(0, 256**spec.depth, shape, dtype=np.uint16 if spec.depth == 2 else np.uint8)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_image_survives_serialization_and_arrives_as_a_view_of_the_message(encoding):
    image = natural_array(encoding)
    sent = numpy_to_image(image, encoding, header())
    assert isinstance(sent.data, array.array) and sent.data.typecode == "B"  # the setter's O(1) path
    received = over_the_wire(sent)
    assert (received.height, received.width, received.encoding) == (6, 8, encoding)
    assert received.step == 8 * ENCODINGS[encoding].bytes_per_pixel
    assert received.header.frame_id == "camera_optical_frame" and received.header.stamp.nanosec == 123_456_789
    out = image_to_numpy(received)
    np.testing.assert_array_equal(out, image)
    assert np.shares_memory(out, np.frombuffer(received.data, np.uint8))


def test_a_bgr_camera_frame_published_as_yuv422_comes_back_as_bgr():
    frame = np.repeat(RNG.integers(0, 256, (6, 4, 3), dtype=np.uint8), 2, axis=1)  # equal pairs: 4:2:2 keeps them
    received = over_the_wire(numpy_to_image(frame, "yuv422", source_encoding="bgr8"))
    assert received.encoding == "yuv422" and received.step == 16
    assert np.abs(image_to_numpy(received, "bgr8").astype(int) - frame).max() <= 2


def test_padded_big_endian_message_built_by_a_driver_decodes():
    values = np.array([[1, 258, 65535], [4096, 0, 772]], np.uint16)
    rows = np.zeros((2, 8), np.uint8)  # 3 pixels of 2 bytes, padded to 8 bytes per row
    rows[:, :6] = values.astype(">u2").view(np.uint8).reshape(2, 6)
    msg = Image(height=2, width=3, encoding="mono16", is_bigendian=1, step=8, data=rows.tobytes())
    np.testing.assert_array_equal(image_to_numpy(over_the_wire(msg)), values)


def test_rgb8_to_bgr8_after_transport():
    msg = Image(height=1, width=2, encoding="rgb8", step=6, data=bytes([1, 2, 3, 4, 5, 6]))
    np.testing.assert_array_equal(image_to_numpy(over_the_wire(msg), "bgr8"), [[[3, 2, 1], [6, 5, 4]]])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(step=14), "step=14"),
        (dict(data=bytes(59)), "59 bytes"),
        (dict(encoding="bgr9000"), "unknown encoding"),
        (dict(height=0, data=b""), "no pixels"),
    ],
)
def test_malformed_messages_raise_image_format_error(change, message):
    msg = Image(**{**dict(height=4, width=5, encoding="bgr8", is_bigendian=0, step=15, data=bytes(60)), **change})
    with pytest.raises(ImageFormatError, match=message):
        image_to_numpy(over_the_wire(msg))


def test_compressed_png_round_trip_is_exact_and_says_what_it_carries():
    frame = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    sent = numpy_to_compressed(frame, "png", header=header())
    assert sent.format == "bgr8; png compressed bgr8" and isinstance(sent.data, array.array)
    received = over_the_wire(sent)
    assert received.header.frame_id == "camera_optical_frame"
    np.testing.assert_array_equal(compressed_to_numpy(received), frame)


def test_compressed_rgb_frame_comes_back_in_its_own_order():
    rgb = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    received = over_the_wire(numpy_to_compressed(rgb, "png", source_encoding="rgb8"))
    assert received.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_to_numpy(received, "passthrough"), rgb)
    np.testing.assert_array_equal(compressed_to_numpy(received, "bgr8"), rgb[..., ::-1])


def test_compressed_jpeg_mono_and_colour():
    y, x = np.mgrid[0:32, 0:48]
    grey = (x * 5 + y * 3).astype(np.uint8)
    received = over_the_wire(numpy_to_compressed(grey, "jpeg", 95))
    assert received.format == "mono8; jpeg compressed mono8"
    out = compressed_to_numpy(received, "passthrough")
    assert out.shape == (32, 48) and np.abs(out.astype(int) - grey).mean() < 1.5
    assert compressed_to_numpy(received).shape == (32, 48, 3)


def test_truncated_jpeg_message_raises_image_format_error():
    msg = over_the_wire(numpy_to_compressed(np.full((16, 16, 3), 200, np.uint8)))
    msg.data = msg.data[: len(msg.data) // 2]
    with pytest.raises(ImageFormatError, match="truncated JPEG"):
        compressed_to_numpy(msg)


def test_every_decoder_honours_the_pixel_limit_after_transport():
    frame = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    messages = [over_the_wire(numpy_to_image(frame, "bgr8")), over_the_wire(numpy_to_compressed(frame, "png")),
                over_the_wire(numpy_to_compressed(frame, "jpeg"))]
    for msg in messages:
        assert to_bgr(msg, max_pixels=48).shape == (6, 8, 3)
        with pytest.raises(ImageFormatError, match=r"of 8x6 = 48 pixels exceeds max_image_pixels = 47"):
            to_bgr(msg, max_pixels=47)
    with pytest.raises(ImageFormatError, match=r"max_image_pixels = 47"):
        image_to_numpy(messages[0], max_pixels=47)
    with pytest.raises(ImageFormatError, match=r"max_image_pixels = 47"):
        compressed_to_numpy(messages[2], "mono8", max_pixels=47)


def test_hostile_compressed_messages_are_malformed_after_transport():
    bomb = over_the_wire(CompressedImage(format="png", data=png_bomb()))
    with pytest.raises(ImageFormatError, match=rf"20000x20000 = 400000000 pixels exceeds max_image_pixels = "
                                               rf"{MAX_IMAGE_PIXELS}"):
        to_bgr(bomb)
    for data in corrupt_jpegs().values():
        with pytest.raises(ImageFormatError, match=r"corrupt JPEG .*libjpeg: Corrupt JPEG data"):
            to_bgr(over_the_wire(CompressedImage(format="bgr8; jpeg compressed bgr8", data=data)))
