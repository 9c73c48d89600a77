"""sensor_msgs Image / CompressedImage <-> numpy: the thin ROS side of core.image_codec.

rclpy keeps a uint8[] field as array.array('B'). Receiving, the pixels are a numpy view of that array
(no copy for bgr8 and the other layouts used as they lie). Publishing, the bytes are copied once into a
fresh array.array, which the generated setter stores as it is. Bytes cost a second copy, and with
ROS_PYTHON_CHECK_FIELDS=1 a Python-level check of every byte (about 240 ms for a 1640×590 bgr8 frame);
a memoryview or numpy array is converted element by element whatever the setting (about 160 ms).
benchmarks/bench_image_codec.py measures all of these.
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from refine_perception.core.image_codec import (
    MAX_IMAGE_PIXELS,
    PASSTHROUGH,
    Buffer,
    ImageFormatError,
    compressed_format,
    decode_compressed,
    decode_raw,
    encode_compressed,
    encode_raw,
    natural_encoding,
)


def _uint8_array(data: Buffer) -> array.array:
    out = array.array("B")
    out.frombytes(data)
    return out


def image_to_numpy(msg: Image, desired: str = PASSTHROUGH, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The pixels of msg (see core.image_codec.decode_raw); a view of msg.data when no conversion is
    needed, so writing into it writes into the message."""
    return decode_raw(msg.data, msg.height, msg.width, msg.encoding, msg.step, bool(msg.is_bigendian), desired,
                      max_pixels)


def numpy_to_image(
    image: np.ndarray, encoding: str, header: Header | None = None, source_encoding: str | None = None
) -> Image:
    """An Image carrying image in encoding; source_encoding names the layout of image when it is not
    already encoding (a camera's BGR frame published as yuv422, say)."""
    raw = encode_raw(image, encoding, source_encoding)
    msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=int(raw.is_bigendian),
                step=raw.step)
    msg.data = _uint8_array(raw.data)
    if header is not None:
        msg.header = header
    return msg


def compressed_to_numpy(
    msg: CompressedImage, desired: str = "bgr8", max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """The pixels of msg in the desired encoding (see core.image_codec.decode_compressed)."""
    return decode_compressed(msg.data, msg.format, desired, max_pixels)


def numpy_to_compressed(
    image: np.ndarray,
    fmt: str = "jpeg",
    quality: int = 90,
    header: Header | None = None,
    source_encoding: str | None = None,
) -> CompressedImage:
    """A CompressedImage of image with image_transport's format field ('bgr8; jpeg compressed bgr8'), so
    ROS tools know the original encoding. source_encoding None: 2-D arrays are mono, others BGR(A)."""
    name = natural_encoding(image) if source_encoding is None else source_encoding
    msg = CompressedImage(format=compressed_format(fmt, name))
    msg.data = _uint8_array(encode_compressed(image, fmt, quality, name))
    if header is not None:
        msg.header = header
    return msg


def to_bgr(msg: Image | CompressedImage, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A camera image message (raw or compressed) as BGR pixels: zero-copy for raw bgr8. An image of more
    than max_pixels pixels (a compressed one measured from its header) raises ImageFormatError."""
    if isinstance(msg, Image):
        return image_to_numpy(msg, "bgr8", max_pixels)
    return compressed_to_numpy(msg, "bgr8", max_pixels)


def depth_to_metres(msg: Image) -> np.ndarray:
    """A depth image as float32 metres along the optical axis, in either REP 118 form: 16UC1 millimetres
    or 32FC1 metres; 0 (and NaN) mean no reading."""
    if msg.encoding in ("16UC1", "mono16"):
        return image_to_numpy(msg).astype(np.float32) * np.float32(0.001)
    if msg.encoding != "32FC1":
        raise ImageFormatError(f"depth images must be 16UC1 (mm) or 32FC1 (m), got {msg.encoding!r}")
    if msg.step < 4 * msg.width or len(msg.data) < msg.step * msg.height:
        raise ImageFormatError(f"32FC1 depth {msg.width}x{msg.height} with step {msg.step} and {len(msg.data)} bytes")
    rows = np.frombuffer(bytes(msg.data), dtype=">f4" if msg.is_bigendian else "<f4",
                         count=msg.step * msg.height // 4).reshape(msg.height, msg.step // 4)
    return np.ascontiguousarray(rows[:, :msg.width], dtype=np.float32)
