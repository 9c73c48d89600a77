"""Camera frames in bags, whatever ground truth travels beside them: the topics, the stamps and the
single reading pass that lane bags and instance bags share.

A frame is written as its image (Image bgr8 or JPEG CompressedImage) and CameraInfo under one header,
logged at the header stamp, so a recording replays with the timing it was made with and every message
of a frame is found again by that stamp.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from refine_perception.bags.reader import BagError, BagReader
from refine_perception.bags.writer import BagWriter
from refine_perception.core.calibration import Calibration
from refine_perception.ros.image_messages import numpy_to_compressed, numpy_to_image
from refine_perception.ros.messages import camera_info_message

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TRANSPORTS = ("raw", "compressed")
TIMING_FILE = "timing.json"  # beside a result bag's data: see write_timing
START_NS = 1_700_000_000 * 10**9  # first stamp of written bags: fixed, so a bag is reproducible byte for byte

Stamp = tuple[int, int]
T = TypeVar("T")


def stamp_of(time_ns: int) -> Time:
    return Time(sec=time_ns // 10**9, nanosec=time_ns % 10**9)


def stamped(items: Iterable[T], fps: float, frame_id: str) -> Iterator[tuple[T, Header, int]]:
    """Each frame of a bag being written with its header and its stamp in ns (also its log time)."""
    for index, item in enumerate(items):
        time_ns = START_NS + round(index * 1e9 / fps)
        yield item, Header(stamp=stamp_of(time_ns), frame_id=frame_id), time_ns


def check_transport(transport: str) -> None:
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be raw or compressed, got {transport!r}")


def write_camera_frame(bag: BagWriter, image: np.ndarray, calibration: Calibration, header: Header, time_ns: int,
                       transport: str = "compressed", jpeg_quality: int = 90, image_topic: str = IMAGE_TOPIC,
                       camera_info_topic: str = CAMERA_INFO_TOPIC) -> None:
    """The CameraInfo and the BGR image of one frame; a compressed image goes to `image_topic`/compressed,
    as image_transport names it."""
    info = camera_info_message(calibration)
    info.header = header
    bag.write(camera_info_topic, info, time_ns)
    if transport == "raw":
        bag.write(image_topic, numpy_to_image(image, "bgr8", header), time_ns)
    else:
        bag.write(f"{image_topic}/compressed", numpy_to_compressed(image, "jpeg", jpeg_quality, header), time_ns)


def cdr_stamp(data: bytes) -> Stamp:
    """The header stamp of a serialised message that starts with a std_msgs/Header, read without
    decoding the rest (an image's pixels)."""
    if len(data) < 12 or data[1] not in (0, 1):
        raise BagError(f"not a CDR message with a header ({len(data)} bytes starting {data[:4].hex()})")
    return struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)


def is_depth_topic(topic: str) -> bool:
    """Depth cameras publish under a `depth` namespace (e.g. /camera/depth/image_raw), by convention."""
    return "depth" in topic.split("/")


def camera_topics(topics: dict[str, str], image_topic: str | None = None,
                  camera_info_topic: str | None = None) -> tuple[str, str | None]:
    """The bag's image topic and CameraInfo topic: the given ones (checked), else the only topic of
    each kind, leaving depth images (`is_depth_topic`) out of the choice; no CameraInfo topic is allowed
    (lanes then stay in the image plane)."""
    path_hint = "choose one with --image-topic"
    if image_topic is None:
        images = [t for t, kind in topics.items() if kind in IMAGE_TYPES and not is_depth_topic(t)]
        if len(images) != 1:
            raise BagError(f"{'no' if not images else len(images)} image topics in the bag "
                           f"({', '.join(images) or 'none'}); {path_hint}")
        image_topic = images[0]
    elif topics.get(image_topic) not in IMAGE_TYPES:
        raise BagError(f"{image_topic} is not an Image/CompressedImage topic of the bag "
                       f"(it has: {', '.join(sorted(topics))})")
    if camera_info_topic is None:
        infos = [t for t, kind in topics.items() if kind == CAMERA_INFO_TYPE]
        camera_info_topic = infos[0] if len(infos) == 1 else None
    elif topics.get(camera_info_topic) != CAMERA_INFO_TYPE:
        raise BagError(f"{camera_info_topic} is not a CameraInfo topic of the bag")
    return image_topic, camera_info_topic


@dataclass
class BagScan:
    """One pass over a bag: topic -> type, the header stamps of every image topic in recorded order,
    the decoded messages of the asked-for topics by stamp, and what could not be read."""

    topics: dict[str, str] = field(default_factory=dict)
    image_stamps: dict[str, list[Stamp]] = field(default_factory=dict)
    decoded: dict[str, dict[Stamp, Any]] = field(default_factory=dict)
    errors: list[BagError] = field(default_factory=list)

    def camera(self, image_topic: str | None, camera_info_topic: str | None) -> tuple[str, bool, str | None, list[Stamp]]:
        """The image topic, whether it is compressed, the CameraInfo topic and the image stamps (see
        `camera_topics`)."""
        image_topic, camera_info_topic = camera_topics(self.topics, image_topic, camera_info_topic)
        return (image_topic, self.topics[image_topic] == IMAGE_TYPES[1], camera_info_topic,
                self.image_stamps.get(image_topic, []))


def scan_bag(path: str | Path, decode_topics: Collection[str]) -> BagScan:
    """Read the bag once: image stamps without decoding the pixels, the messages on `decode_topics`
    decoded (those are not camera candidates, even when they are images); an undecodable message is
    recorded with the reader's errors and skipped."""
    reader = BagReader(path)
    scan = BagScan(decoded={topic: {} for topic in decode_topics})
    undecodable: list[BagError] = []
    for message in reader.messages():
        scan.topics.setdefault(message.topic, message.msgtype)
        try:
            if message.topic in scan.decoded:  # ground truth may be images too (a street bag's label ids)
                scan.decoded[message.topic][cdr_stamp(message.data)] = message.decode()
            elif message.msgtype in IMAGE_TYPES:
                scan.image_stamps.setdefault(message.topic, []).append(cdr_stamp(message.data))
        except BagError as error:
            undecodable.append(error)
    scan.errors = list(reader.errors) + undecodable
    return scan


def write_timing(result_bag: str | Path, mode: str, bag: str | Path, frames: list[tuple[Stamp, int]],
                 rate: float | None = None, timeouts: int = 0, errors: list[str] | None = None) -> None:
    """The sidecar of a result bag (TIMING_FILE): how it was made and, per camera frame, its stamp and
    the wall time (ns) it was sent, which with the outputs' log times gives each frame's latency."""
    timing = {"mode": mode, "rate": rate, "bag": str(Path(bag).resolve()),
              "frames": [[sec, nsec, wall] for (sec, nsec), wall in frames], "timeouts": timeouts,
              "read_errors": errors or []}
    (Path(result_bag) / TIMING_FILE).write_text(json.dumps(timing))
