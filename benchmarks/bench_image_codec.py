"""Image conversion costs at the CULane frame size (1640×590), ours against the naive copying code a
node would otherwise carry, both measured in this run on this machine.

    ./dev run python benchmarks/bench_image_codec.py [--repeat N] [--json]

Receive cases start from a message that went through rclpy serialization, so msg.data is the
array.array('B') a subscriber gets. 'speedup' is naive time / our time.
"""

from __future__ import annotations

import argparse
import array
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from the repo

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from refine_perception.core.cpu import describe  # noqa: E402
from refine_perception.core.stats import median_ms  # noqa: E402
from refine_perception.ros.image_messages import (  # noqa: E402
    compressed_to_numpy,
    image_to_numpy,
    numpy_to_compressed,
    numpy_to_image,
)

HEIGHT, WIDTH = 590, 1640


def camera_like_frame() -> np.ndarray:
    """Gradients, edges and sensor noise, so JPEG sizes and demosaicing work like on a road image."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    frame = np.stack([x / WIDTH * 200, y / HEIGHT * 180 + 40 * (((x // 64) + (y // 48)) % 2), (x + y) % 256], -1)
    noise = np.random.default_rng(0).normal(0, 3, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def received(msg: Image | CompressedImage) -> Image | CompressedImage:
    return deserialize_message(serialize_message(msg), type(msg))


def naive_bytes(msg: Image | CompressedImage) -> np.ndarray:
    return np.array(msg.data, dtype=np.uint8)


def cases(frame: np.ndarray) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(name, ours, naive) triples."""
    shape3 = (HEIGHT, WIDTH, 3)
    bgr = received(numpy_to_image(frame, "bgr8"))
    rgb = received(numpy_to_image(frame, "rgb8", source_encoding="bgr8"))
    yuv = received(numpy_to_image(frame, "yuv422", source_encoding="bgr8"))
    bayer = received(numpy_to_image(frame, "bayer_rggb8", source_encoding="bgr8"))
    jpeg = received(numpy_to_compressed(frame, "jpeg", 90))

    def naive_image(encoding: str, data: bytes) -> Image:
        return Image(height=HEIGHT, width=WIDTH, encoding=encoding, step=len(data) // HEIGHT, data=data)

    return [
        ("decode bgr8 -> bgr8", lambda: image_to_numpy(bgr, "bgr8"), lambda: naive_bytes(bgr).reshape(shape3)),
        ("decode rgb8 -> bgr8", lambda: image_to_numpy(rgb, "bgr8"),
         lambda: naive_bytes(rgb).reshape(shape3)[..., ::-1].copy()),
        ("decode yuv422 -> bgr8", lambda: image_to_numpy(yuv, "bgr8"),
         lambda: cv2.cvtColor(naive_bytes(yuv).reshape(HEIGHT, WIDTH, 2), cv2.COLOR_YUV2BGR_UYVY)),
        ("decode bayer_rggb8 -> bgr8", lambda: image_to_numpy(bayer, "bgr8"),
         lambda: cv2.cvtColor(naive_bytes(bayer).reshape(HEIGHT, WIDTH), cv2.COLOR_BayerRGGB2BGR)),
        ("decode jpeg q90 -> bgr8", lambda: compressed_to_numpy(jpeg, "bgr8"),
         lambda: cv2.imdecode(naive_bytes(jpeg), cv2.IMREAD_COLOR)),
        ("decode jpeg q90 -> mono8", lambda: compressed_to_numpy(jpeg, "mono8"),
         lambda: cv2.cvtColor(cv2.imdecode(naive_bytes(jpeg), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)),
        ("build Image bgr8", lambda: numpy_to_image(frame, "bgr8"), lambda: naive_image("bgr8", frame.tobytes())),
        ("build Image yuv422 from bgr8", lambda: numpy_to_image(frame, "yuv422", source_encoding="bgr8"),
         lambda: naive_image("yuv422", cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_UYVY).tobytes())),
    ]


def data_assignments(frame: np.ndarray) -> dict[str, Callable[[], Any]]:
    """What Image.data = X costs for each kind of X rclpy's generated setter may be handed, with its
    per-element checks off (the default) and on (ROS_PYTHON_CHECK_FIELDS=1)."""
    msg, checked = Image(), Image(check_fields=True)

    def fresh_array(target: Image) -> None:
        data = array.array("B")
        data.frombytes(frame)
        target.data = data

    return {
        "array.array('B') by frombytes (used)": lambda: fresh_array(msg),
        "array.array('B') by frombytes, checks on": lambda: fresh_array(checked),
        "bytes (frame.tobytes())": lambda: setattr(msg, "data", frame.tobytes()),
        "bytes (frame.tobytes()), checks on": lambda: setattr(checked, "data", frame.tobytes()),
        "memoryview of the frame": lambda: setattr(msg, "data", memoryview(frame).cast("B")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per case (median reported)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    frame = camera_like_frame()
    memcpy = median_ms(frame.copy, args.repeat)
    rows = []
    for name, ours, naive in cases(frame):
        ours_ms, naive_ms = median_ms(ours, args.repeat), median_ms(naive, args.repeat)
        rows.append({"case": name, "ours_ms": ours_ms, "naive_ms": naive_ms, "speedup": naive_ms / ours_ms})
    # The checked setter walks every byte in Python: a few runs say enough.
    assign = {name: median_ms(fn, max(3, args.repeat // 10)) for name, fn in data_assignments(frame).items()}
    result = {"cpu": describe(), "frame": [HEIGHT, WIDTH, 3], "repeat": args.repeat, "memcpy_ms": memcpy,
              "cases": rows, "assign_data_ms": assign}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"CPU: {result['cpu']}")
    print(f"{WIDTH}x{HEIGHT} bgr8 frame, median of {args.repeat} runs; one memcpy of the frame: {memcpy:.3f} ms")
    print(f"{'case':34} {'ours ms':>9} {'naive ms':>9} {'speedup':>8}")
    for row in rows:
        print(f"{row['case']:34} {row['ours_ms']:9.3f} {row['naive_ms']:9.3f} {row['speedup']:7.1f}x")
    print("Image.data = ...")
    for name, ms in assign.items():
        print(f"  {name:46} {ms:9.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
