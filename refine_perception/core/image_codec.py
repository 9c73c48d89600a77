"""sensor_msgs/Image and CompressedImage payloads <-> numpy, without ROS.

PyPI's cv-bridge is not the ROS 2 one and ROS 2's cv_bridge is not installable here, so this module does
its job: it reads and writes the byte layout of every encoding the project meets (packed colour, mono,
16-bit mono in either byte order, YUV 4:2:2, 8-bit Bayer, JPEG and PNG) and validates every field of a
message before touching its bytes, so that a malformed frame gives one typed error instead of a crash
deep inside numpy or OpenCV.

Decoding returns a view of the message buffer whenever the pixels can be used as they lie (rows padded
past width*bytes_per_pixel included); a copy is made only when the pixels must change: a colour
conversion, a demosaic, YUV to RGB, or a byte swap of 16-bit data from the other byte order.

Conventions (those of ROS image_encodings, cv_bridge and image_transport):
- 8UC1 is laid out as mono8, 8UC3 as bgr8, 16UC1 as mono16; uyvy and yuyv are aliases of yuv422 and
  yuv422_yuy2.
- YUV 4:2:2 uses BT.601 with studio swing (Y in 16..235), as OpenCV's YUV422 conversions do.
- Bayer demosaicing is OpenCV's bilinear one, as in cv_bridge. It keeps every sampled value except on
  the one-pixel image border, which OpenCV fills from the neighbouring rows and columns.
- mono16 -> 8 bit keeps the high byte; 8 bit -> mono16 multiplies by 257, so 0..255 maps onto 0..65535
  and a mono8 -> mono16 -> mono8 round trip is exact.
- The data of a message must be exactly height*step bytes, as sensor_msgs/Image defines it and cv_bridge
  checks: a longer buffer is refused as well as a shorter one, since extra bytes mean the sender got
  height or step wrong and the rows cannot be trusted.
- No image may have more than max_pixels pixels (width*height, MAX_IMAGE_PIXELS unless the caller says
  otherwise). A compressed image is measured from its header (PNG IHDR, JPEG frame header) before any
  pixel is allocated, so a small PNG that claims 20000x20000 costs nothing.
- JPEG is decoded by libjpeg-turbo (simplejpeg) in strict mode, with the settings OpenCV uses, so the
  pixels are OpenCV's. What libjpeg calls a warning (a cut or damaged scan: "Corrupt JPEG data: premature
  end of data segment", "N extraneous bytes before marker") is an error here: OpenCV and Pillow decode
  such a frame into a partly grey or smeared picture and say nothing a program can see. JPEG has no
  checksum, so damage that leaves the Huffman decoder in step cannot be seen by anyone.
"""

from __future__ import annotations

import array
import struct
import sys
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import simplejpeg

Buffer = bytes | bytearray | memoryview | array.array | np.ndarray
Family = Literal["direct", "yuv", "bayer"]


class ImageFormatError(ValueError):
    """A message or array whose layout contradicts its own fields, or an encoding we cannot read."""


@dataclass(frozen=True)
class EncodingSpec:
    """How an encoding lays out its pixels and how its passthrough array looks."""

    family: Family
    name: str  # direct: the layout (bgr8, ...); yuv: UYVY or YUY2; bayer: the 2x2 pattern, e.g. RGGB
    channels: int  # of the passthrough array
    depth: int  # bytes per channel

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.depth


def _direct(name: str, channels: int, depth: int = 1) -> EncodingSpec:
    return EncodingSpec("direct", name, channels, depth)


ENCODINGS: dict[str, EncodingSpec] = {
    "bgr8": _direct("bgr8", 3),
    "rgb8": _direct("rgb8", 3),
    "bgra8": _direct("bgra8", 4),
    "rgba8": _direct("rgba8", 4),
    "mono8": _direct("mono8", 1),
    "mono16": _direct("mono16", 1, 2),
    "8UC1": _direct("mono8", 1),
    "8UC3": _direct("bgr8", 3),
    "16UC1": _direct("mono16", 1, 2),
    "yuv422": EncodingSpec("yuv", "UYVY", 2, 1),
    "uyvy": EncodingSpec("yuv", "UYVY", 2, 1),
    "yuv422_yuy2": EncodingSpec("yuv", "YUY2", 2, 1),
    "yuyv": EncodingSpec("yuv", "YUY2", 2, 1),
    **{f"bayer_{p}8": EncodingSpec("bayer", p.upper(), 1, 1) for p in ("rggb", "bggr", "gbrg", "grbg")},
}
PASSTHROUGH = "passthrough"
_CV_NAME = {"bgr8": "BGR", "rgb8": "RGB", "bgra8": "BGRA", "rgba8": "RGBA", "mono8": "GRAY"}
_BGR_INDEX = {"B": 0, "G": 1, "R": 2}
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE, _PNG_IEND = b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x00IEND\xaeB`\x82"
_CODECS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
# 64 MP: 8192x8192, above 8K video (33 MP) and 50 MP machine-vision sensors; a bgr8 frame that size is
# 192 MiB, a bound a node can afford, where a forged header could otherwise ask for gigabytes.
MAX_IMAGE_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image. data may be a view of the encoded array: keep that unchanged
    until the message is built."""

    data: bytes | memoryview
    height: int
    width: int
    step: int
    encoding: str
    is_bigendian: bool


@dataclass(frozen=True)
class CompressedFormat:
    """A parsed CompressedImage.format: the codec, the encoding of the image before compression and the
    pixel layout that went into the codec (image_transport writes e.g. 'rgb8; jpeg compressed bgr8')."""

    codec: str | None  # None: the field did not say; the data's signature decides
    encoding: str | None
    packed: str | None


def _spec(encoding: str, what: str = "encoding", choices: tuple[str, ...] = tuple(ENCODINGS)) -> EncodingSpec:
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageFormatError(f"unknown {what} {encoding!r}; supported: {', '.join(choices)}") from None


def _target(desired: str, natural: str) -> EncodingSpec:
    if desired == PASSTHROUGH:
        return ENCODINGS[natural]
    return _spec(desired, "desired encoding", (PASSTHROUGH, *ENCODINGS))


def _check_size(spec: EncodingSpec, encoding: str, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageFormatError(f"image has no pixels: height={height} width={width} (both must be positive)")
    if spec.family == "yuv" and width % 2:
        raise ImageFormatError(f"{encoding} packs pixels in pairs, so width must be even; got width={width}")


def _check_pixels(what: str, width: int, height: int, max_pixels: int) -> None:
    """Refuses an image larger than max_pixels before its pixels are touched or allocated."""
    if width * height > max_pixels:
        raise ImageFormatError(f"{what} of {width}x{height} = {width * height} pixels exceeds "
                               f"max_image_pixels = {max_pixels}")


def _byte_buffer(data: Buffer) -> np.ndarray:
    """A flat uint8 view of any bytes-like object (the view is why array.array from rclpy costs nothing)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageFormatError(f"data must hold uint8 bytes, got an array of {data.dtype}")
        return data.reshape(-1)
    try:
        view = memoryview(data)
    except TypeError:
        raise ImageFormatError(f"data must be a bytes-like buffer, got {type(data).__name__}") from None
    if view.itemsize != 1 or not view.contiguous:
        raise ImageFormatError(f"data must be a contiguous buffer of bytes, got items of {view.itemsize} bytes")
    return np.frombuffer(view, np.uint8)


def decode_raw(
    data: Buffer,
    height: int,
    width: int,
    encoding: str,
    step: int,
    is_bigendian: bool = False,
    desired: str = PASSTHROUGH,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """The pixels of an Image message. 'passthrough' gives the encoding's own array (H×W×C or H×W; uint16
    in native byte order for 16-bit encodings; H×W×2 for YUV 4:2:2, the H×W mosaic for Bayer), as a view
    of data when the byte order allows. Any encoding name as desired converts to that layout; asking for
    the layout the data already has is free."""
    spec = _spec(encoding)
    target = _target(desired, encoding)
    _check_size(spec, encoding, height, width)
    _check_pixels(f"{encoding} image", width, height, max_pixels)
    row_bytes = width * spec.bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(
            f"step={step} is smaller than width*bytes_per_pixel = {width}*{spec.bytes_per_pixel} = {row_bytes} "
            f"for {encoding}"
        )
    buffer = _byte_buffer(data)
    if buffer.size != height * step:
        raise ImageFormatError(f"data has {buffer.size} bytes but height*step = {height}*{step} = {height * step}")
    rows = np.reshape(buffer, (height, step), copy=False)[:, :row_bytes]
    if spec.depth == 2:
        rows = rows.view(np.dtype(">u2" if is_bigendian else "<u2"))
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    pixels = np.reshape(rows, shape, copy=False)
    if not pixels.dtype.isnative:
        pixels = pixels.astype(np.uint16)
    return _transcode(pixels, spec, target)


def encode_raw(image: np.ndarray, encoding: str, source_encoding: str | None = None) -> RawImage:
    """The Image fields that carry image in encoding. source_encoding names the layout of image (None:
    it is already laid out as encoding); when the two differ the pixels are converted, e.g. a BGR frame
    into a YUV 4:2:2 stream or a Bayer mosaic. Unconverted contiguous pixels are shared, not copied."""
    spec = _spec(encoding)
    source_name = encoding if source_encoding is None else source_encoding
    source = _spec(source_name, "source encoding")
    pixels = _checked_array(image, source, source_name)
    _check_size(spec, encoding, *pixels.shape[:2])
    packed = np.ascontiguousarray(_transcode(pixels, source, spec))
    big = packed.dtype.byteorder == ">" or (packed.dtype.byteorder == "=" and sys.byteorder == "big")
    height, width = packed.shape[:2]
    return RawImage(
        data=memoryview(packed.reshape(-1).view(np.uint8)),
        height=height,
        width=width,
        step=width * spec.bytes_per_pixel,
        encoding=encoding,
        is_bigendian=spec.depth > 1 and big,
    )


def _checked_array(image: np.ndarray, spec: EncodingSpec, encoding: str) -> np.ndarray:
    """image as the array layout of encoding (an H×W×1 mono array becomes H×W), or a clear error."""
    if not isinstance(image, np.ndarray):
        raise ImageFormatError(f"image must be a numpy array, got {type(image).__name__}")
    shape = "H×W" if spec.channels == 1 else f"H×W×{spec.channels}"
    expected = f"{encoding} needs an {shape} array of uint{8 * spec.depth}"
    if image.dtype.kind != "u" or image.dtype.itemsize != spec.depth:
        raise ImageFormatError(f"{expected}, got dtype {image.dtype}")
    if spec.channels == 1 and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim < 2 or image.shape[2:] != ((spec.channels,) if spec.channels > 1 else ()):
        raise ImageFormatError(f"{expected}, got shape {image.shape}")
    _check_size(spec, encoding, *image.shape[:2])
    return image


def _transcode(pixels: np.ndarray, source: EncodingSpec, target: EncodingSpec) -> np.ndarray:
    """pixels (laid out as source) laid out as target; the same array when nothing changes."""
    if (source.family, source.name) == (target.family, target.name):
        return pixels
    if target.family == "direct":
        return _to_layout(pixels, source, target.name)
    if target.family == "bayer":
        return _mosaic(_to_layout(pixels, source, "bgr8"), target.name)
    if not (source.family == "direct" and source.name in ("bgr8", "rgb8", "bgra8", "rgba8")):
        pixels, source = _to_layout(pixels, source, "bgr8"), ENCODINGS["bgr8"]
    return cv2.cvtColor(pixels, getattr(cv2, f"COLOR_{_CV_NAME[source.name]}2YUV_{target.name}"))


def _to_layout(pixels: np.ndarray, source: EncodingSpec, layout: str) -> np.ndarray:
    if source.family == "direct" and source.name == layout:
        return pixels
    if source.name == "mono16":
        return _to_layout((pixels >> 8).astype(np.uint8), ENCODINGS["mono8"], layout)
    if layout == "mono16":
        return _to_layout(pixels, source, "mono8").astype(np.uint16) * np.uint16(257)
    name = _CV_NAME[layout]
    if source.family == "yuv":
        code = f"COLOR_YUV2{name}_{source.name}"
    elif source.family == "bayer":
        code = f"COLOR_Bayer{source.name}2{name}"
    else:
        code = f"COLOR_{_CV_NAME[source.name]}2{name}"
    return cv2.cvtColor(pixels, getattr(cv2, code))


def _mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Keeps, at each pixel, the one colour the 2x2 pattern (read row by row) samples there."""
    mosaic = np.empty(bgr.shape[:2], np.uint8)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        mosaic[dy::2, dx::2] = bgr[dy::2, dx::2, _BGR_INDEX[colour]]
    return mosaic


def parse_compressed_format(fmt: str) -> CompressedFormat:
    """Reads 'jpeg', 'png', '' (codec from the data) and image_transport's
    '<encoding>; <codec> compressed [<packed layout>]'."""
    text = fmt.strip()
    encoding, _, rest = text.rpartition(";")
    words = rest.split()
    if "compressedDepth" in words:
        raise ImageFormatError(f"CompressedImage format {fmt!r}: compressedDepth (depth) images are not supported")
    if not words:
        return CompressedFormat(None, encoding.strip() or None, None)
    codec = _CODECS.get(words[0].lower())
    packed = words[2] if len(words) == 3 else None
    if codec is None or len(words) > 3 or (len(words) > 1 and words[1] != "compressed"):
        raise ImageFormatError(
            f"unknown CompressedImage format {fmt!r}; "
            "expected jpeg, png or '<encoding>; jpeg|png compressed <encoding>'"
        )
    if packed is not None and (packed not in ENCODINGS or ENCODINGS[packed].family != "direct"):
        raise ImageFormatError(f"CompressedImage format {fmt!r}: compressed layout {packed!r} is not supported")
    return CompressedFormat(codec, encoding.strip() or None, packed)


def _check_stream(buffer: np.ndarray, codec: str | None) -> str:
    """The codec, after checking that the bytes start and end as that codec's files must. This names a
    truncation as such before any decoder sees the data."""
    head = buffer[:8].tobytes()
    if codec is None:
        codec = "jpeg" if head.startswith(_JPEG_SOI) else "png" if head.startswith(_PNG_SIGNATURE) else None
        if codec is None:
            raise ImageFormatError(f"format is empty and the data is neither JPEG nor PNG (starts {head.hex(' ')})")
    if codec == "jpeg":
        if not head.startswith(_JPEG_SOI):
            raise ImageFormatError(f"not a JPEG: the data does not start with the SOI marker ff d8 "
                                   f"(starts {head.hex(' ')})")
        if not buffer[-16:].tobytes().rstrip(b"\x00").endswith(_JPEG_EOI):
            raise ImageFormatError(f"truncated JPEG: the {buffer.size} bytes do not end with the EOI marker ff d9")
    elif not head.startswith(_PNG_SIGNATURE):
        raise ImageFormatError(f"not a PNG: the data does not start with the PNG signature (starts {head.hex(' ')})")
    elif buffer[-12:].tobytes() != _PNG_IEND:
        raise ImageFormatError(f"truncated PNG: the {buffer.size} bytes do not end with the IEND chunk")
    return codec


def _decode_jpeg(buffer: np.ndarray, grey: bool, max_pixels: int) -> np.ndarray:
    """H×W grey or H×W×3 BGR pixels of a JPEG (grey when asked for or when the file is grey), as
    OpenCV's imdecode gives them, refusing what libjpeg only warns about (see the module's docstring)."""
    try:
        height, width, colour_space, _ = simplejpeg.decode_jpeg_header(buffer)
    except ValueError as error:
        raise ImageFormatError(f"corrupt JPEG header ({buffer.size} bytes): libjpeg: {error}") from None
    _check_pixels("JPEG", width, height, max_pixels)
    grey = grey or colour_space == "Gray"
    try:
        image = simplejpeg.decode_jpeg(buffer, "GRAY" if grey else "BGR", strict=True)
    except ValueError as error:
        raise ImageFormatError(f"corrupt JPEG ({buffer.size} bytes): libjpeg: {error}") from None
    return image[:, :, 0] if grey else image


def _decode_png(buffer: np.ndarray, max_pixels: int) -> np.ndarray:
    """The pixels of a PNG as OpenCV decodes them, once its IHDR says they are few enough."""
    if buffer.size < 33 or buffer[12:16].tobytes() != b"IHDR":
        raise ImageFormatError("PNG does not start with its IHDR chunk")
    width, height = struct.unpack(">II", buffer[16:24].tobytes())
    _check_pixels("PNG", width, height, max_pixels)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageFormatError(f"corrupt PNG: OpenCV could not decode the {buffer.size} bytes")
    return image


def decode_compressed(
    data: Buffer, fmt: str, desired: str = "bgr8", max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """The pixels of a CompressedImage in the desired encoding. 'passthrough' gives the encoding the image
    had before compression when the format names a supported one (as image_transport's subscriber does),
    else the decoded layout (mono8, mono16, bgr8 or bgra8)."""
    parsed = parse_compressed_format(fmt)
    buffer = _byte_buffer(data)
    if buffer.size == 0:
        raise ImageFormatError("CompressedImage data is empty")
    codec = _check_stream(buffer, parsed.codec)
    if codec == "jpeg":
        # libjpeg gives grey straight from the luma plane, skipping the colour conversion (about 25 % faster).
        image = _decode_jpeg(buffer, desired == "mono8" and parsed.packed != "rgb8", max_pixels)
    else:
        image = _decode_png(buffer, max_pixels)
    channels = 1 if image.ndim == 2 else image.shape[2]
    layouts = {
        (1, 1): "mono8",
        (1, 3): "rgb8" if parsed.packed == "rgb8" else "bgr8",
        (1, 4): "bgra8",
        (2, 1): "mono16",
    }
    layout = layouts.get((image.dtype.itemsize, channels))
    if layout is None:
        raise ImageFormatError(
            f"decoded {codec.upper()} has {channels} channels of {image.dtype}; supported: 8-bit mono, colour "
            "and colour with alpha, 16-bit mono"
        )
    natural = parsed.encoding if parsed.encoding in ENCODINGS else layout
    return _transcode(image, ENCODINGS[layout], _target(desired, natural))


def _codec_layout(source: EncodingSpec, codec: str) -> str:
    """What image_transport feeds the codec: grey stays grey (16-bit only into PNG), the rest goes as bgr8."""
    if source.name == "mono16":
        if codec == "jpeg":
            raise ImageFormatError("JPEG holds 8-bit images only; send mono16 as png")
        return "mono16"
    return "mono8" if source.name == "mono8" else "bgr8"


def natural_encoding(image: np.ndarray) -> str:
    """The encoding a bare array most likely is: the project keeps colour frames in OpenCV's BGR order."""
    if isinstance(image, np.ndarray) and image.ndim == 2:
        return "mono16" if image.dtype.itemsize == 2 else "mono8"
    return "bgra8" if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 4 else "bgr8"


def _codec(fmt: str) -> str:
    codec = _CODECS.get(fmt.strip().lower())
    if codec is None:
        raise ImageFormatError(f"unknown compression format {fmt!r}; use jpeg or png")
    return codec


def compressed_format(fmt: str, source_encoding: str) -> str:
    """The CompressedImage.format image_transport writes for an image of source_encoding, e.g.
    'rgb8; jpeg compressed bgr8'."""
    codec = _codec(fmt)
    return f"{source_encoding}; {codec} compressed {_codec_layout(_spec(source_encoding), codec)}"


def encode_compressed(
    image: np.ndarray, fmt: str = "jpeg", quality: int = 90, source_encoding: str | None = None
) -> bytes:
    """JPEG (quality 1..100) or lossless PNG bytes of image. source_encoding names the layout of image;
    None takes a 2-D array as mono8/mono16 and a 3- or 4-channel one as bgr8/bgra8."""
    codec = _codec(fmt)
    if codec == "jpeg" and not 1 <= quality <= 100:
        raise ImageFormatError(f"JPEG quality must be within 1..100, got {quality}")
    name = natural_encoding(image) if source_encoding is None else source_encoding
    source = _spec(name, "source encoding")
    pixels = _checked_array(image, source, name)
    packed = _transcode(pixels, source, ENCODINGS[_codec_layout(source, codec)])
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if codec == "jpeg" else ".png", packed, params)
    if not ok:
        raise ImageFormatError(f"OpenCV could not encode a {pixels.shape} {name} image as {codec}")
    return encoded.tobytes()
