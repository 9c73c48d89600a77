"""Hostile compressed images for the codec and node tests: JPEGs whose entropy-coded data is damaged in
ways libjpeg notices (it decodes them anyway, with only a warning) and PNGs that claim huge sizes."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def textured_image(height: int = 96, width: int = 128) -> np.ndarray:
    """Gradients plus noise: enough entropy-coded data for the damage below to land inside it."""
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(3).integers(0, 40, (height, width, 3))
    return np.clip(np.stack([x * 2, y * 2, x + y], axis=-1) + noise, 0, 255).astype(np.uint8)


def _flipped(data: bytes, at: float, count: int, mask: int) -> bytes:
    damaged = bytearray(data)
    start = int(len(data) * at)
    for index in range(start, start + count):
        damaged[index] ^= mask
    return bytes(damaged)


def corrupt_jpegs(image: np.ndarray | None = None) -> dict[str, bytes]:
    """Damaged JPEGs that still start with SOI and end with EOI, each one that libjpeg warns about
    (checked for this image): a cut stream with its EOI put back, bytes pushed in before the EOI, and
    flipped bits in the entropy-coded data that throw the Huffman decoder off."""
    data = cv2.imencode(".jpg", textured_image() if image is None else image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    data = data.tobytes()
    return {
        "cut at 60 % with EOI appended": data[: len(data) * 6 // 10] + b"\xff\xd9",
        "cut at 30 % with EOI appended": data[: len(data) * 3 // 10] + b"\xff\xd9",
        "64 bytes pushed in before EOI": data[:-2] + bytes(range(1, 65)) + b"\xff\xd9",
        "16 bytes flipped late in the scan": _flipped(data, 0.7, 16, 0x10),
        "4 bytes flipped mid-scan": _flipped(data, 0.5, 4, 0x10),
    }


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG of width x height black pixels, 1 bit per pixel: about 50 KB for 20000x20000, which a
    decoder expands to width*height bytes of grey (400 MB) and three times that as bgr8."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey, deflate, no interlace
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 and the packed pixels
    packer = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 22) // len(row))
    idat = bytearray()
    for first in range(0, height, rows_per_block):
        idat += packer.compress(row * min(rows_per_block, height - first))
    idat += packer.flush()
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", bytes(idat)) + _chunk(b"IEND", b"")


def forged_png(width: int, height: int) -> bytes:
    """A small real PNG whose IHDR (with a valid CRC) claims width x height: refused by any decoder
    that trusts the header enough to allocate the image first."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    assert data[12:16] == b"IHDR"
    ihdr = bytes(data[16:29])
    data[8:33] = _chunk(b"IHDR", struct.pack(">II", width, height) + ihdr[8:])
    return bytes(data)


def forged_jpeg(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)  # after the length and the sample precision
    return bytes(data)
