"""Lane datasets as bags, and bags as lane frames.

A lane bag holds, per frame and all with the image's header: the camera image (Image or
CompressedImage), its CameraInfo, the annotated lanes (refine_msgs/LaneArray on /ground_truth/lanes)
and the frame's tags such as the CULane category (refine_msgs/FrameTags on /ground_truth/tags).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Header

from refine_msgs.msg import FrameTags, LaneArray
from refine_perception.bags.reader import BagError, BagReader
from refine_perception.bags.writer import BagWriter
from refine_perception.core.calibration import Calibration
from refine_perception.core.frame_sources import SyntheticDriveSource, default_camera_matrix
from refine_perception.models.clrnet.head import LANE_COLORS, LANE_TYPES
from refine_perception.ros.image_convert import numpy_to_compressed, numpy_to_image
from refine_perception.ros.lane_messages import truth_lane_array
from refine_perception.ros.messages import camera_info_message

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
TRUTH_LANES_TOPIC = "/ground_truth/lanes"
TRUTH_TAGS_TOPIC = "/ground_truth/tags"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TIMING_FILE = "timing.json"  # beside a result bag's data: see write_timing
START_NS = 1_700_000_000 * 10**9  # first stamp of written bags: fixed, so a bag is reproducible byte for byte
DEFAULT_HFOV_DEG = 60.0

Stamp = tuple[int, int]


@dataclass(frozen=True)
class TruthFrame:
    """One annotated camera frame. `types` / `colors` index LANE_TYPES / LANE_COLORS (-1: unlabelled);
    `ids` and `ground` (road-plane points) where the source knows them."""

    image: np.ndarray  # BGR uint8
    lanes: tuple[np.ndarray, ...]
    types: tuple[int, ...]
    colors: tuple[int, ...]
    tags: tuple[str, ...] = ()
    camera_matrix: np.ndarray | None = None
    ids: tuple[int, ...] | None = None
    ground: tuple[np.ndarray, ...] | None = None


def drive_frames(spec: str) -> Iterator[TruthFrame]:
    """The synthetic drive `spec` (synthetic:drive?seed=..&frames=..) with its exact ground truth."""
    for frame in SyntheticDriveSource(spec):
        sample = frame.extras["sample"]
        yield TruthFrame(
            sample.image,
            tuple(lane.image_points for lane in sample.lanes),
            tuple(LANE_TYPES.index(lane.kind) for lane in sample.lanes),
            tuple(LANE_COLORS.index(lane.colour) if lane.colour in LANE_COLORS else 0 for lane in sample.lanes),
            (sample.category,),
            sample.camera.K,
            tuple(lane.id for lane in sample.lanes),
            tuple(lane.ground_points for lane in sample.lanes),
        )


def drive_mount_params(spec: str) -> dict[str, float]:
    """The lane_detector parameters of the synthetic drive's camera mounting (what TF would give a robot)."""
    from refine_perception.data.synthetic.road import drive_camera

    options = SyntheticDriveSource(spec).options
    camera = drive_camera(int(options["seed"]), int(options["width"]), int(options["height"]))
    return {"camera_height_m": float(camera.mount_height), "camera_pitch_rad": float(camera.pitch),
            "camera_roll_rad": float(camera.roll), "camera_yaw_rad": float(camera.yaw)}


def dataset_frames(records: Iterable[Any]) -> Iterator[TruthFrame]:
    """Frames of training-module LaneRecords (CULane, TuSimple or synthetic scenes)."""
    for record in records:
        yield TruthFrame(record.image, record.lanes, record.types, record.colors,
                         (record.category,) if record.category else ())


def stamp_of(time_ns: int) -> Time:
    return Time(sec=time_ns // 10**9, nanosec=time_ns % 10**9)


def write_lane_bag(path: str | Path, frames: Iterable[TruthFrame], storage: str = "mcap",
                   transport: str = "compressed", fps: float = 10.0, jpeg_quality: int = 90,
                   frame_id: str = "camera_optical_frame", ground_frame: str = "base_footprint",
                   image_topic: str = IMAGE_TOPIC, camera_info_topic: str = CAMERA_INFO_TOPIC,
                   overwrite: bool = False) -> int:
    """Write `frames` as a lane bag; returns the number of frames. Log times equal the header stamps."""
    if transport not in ("raw", "compressed"):
        raise ValueError(f"transport must be raw or compressed, got {transport!r}")
    count = 0
    with BagWriter(path, storage, overwrite=overwrite) as bag:
        for index, frame in enumerate(frames):
            time_ns = START_NS + round(index * 1e9 / fps)
            header = Header(stamp=stamp_of(time_ns), frame_id=frame_id)
            height, width = frame.image.shape[:2]
            K = frame.camera_matrix if frame.camera_matrix is not None else default_camera_matrix(
                width, height, DEFAULT_HFOV_DEG)
            info = camera_info_message(Calibration.pinhole(width, height, np.asarray(K, float)))
            info.header = header
            bag.write(camera_info_topic, info, time_ns)
            truth = truth_lane_array(header, (height, width), frame.lanes, frame.types, frame.colors, frame.ids,
                                     frame.ground, ground_frame if frame.ground is not None else "")
            bag.write(TRUTH_LANES_TOPIC, truth, time_ns)
            bag.write(TRUTH_TAGS_TOPIC, FrameTags(header=header, tags=list(frame.tags)), time_ns)
            if transport == "raw":
                image = numpy_to_image(frame.image, "bgr8")
                bag.write(image_topic, _with_header(image, header), time_ns)
            else:
                image = numpy_to_compressed(frame.image, "jpeg", jpeg_quality)
                bag.write(f"{image_topic}/compressed", _with_header(image, header), time_ns)
            count += 1
    return count


def _with_header(msg: Any, header: Header) -> Any:
    msg.header = header
    return msg


def cdr_stamp(data: bytes) -> Stamp:
    """The header stamp of a serialised message that starts with a std_msgs/Header, read without
    decoding the rest (an image's pixels)."""
    if len(data) < 12 or data[1] not in (0, 1):
        raise BagError(f"not a CDR message with a header ({len(data)} bytes starting {data[:4].hex()})")
    return struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)


@dataclass
class LaneBag:
    """What evaluation needs from a lane bag: the camera topics, the image stamps in recorded order, and
    the ground truth and tags by stamp."""

    path: Path
    image_topic: str
    compressed: bool  # CompressedImage, else Image
    camera_info_topic: str | None
    stamps: list[Stamp]
    truth: dict[Stamp, LaneArray]
    tags: dict[Stamp, tuple[str, ...]]
    errors: list[BagError]


def camera_topics(topics: dict[str, str], image_topic: str | None = None,
                  camera_info_topic: str | None = None) -> tuple[str, str | None]:
    """The bag's image topic and CameraInfo topic: the given ones (checked), else the only topic of
    each kind (no CameraInfo topic is allowed: lanes then stay in the image plane)."""
    path_hint = "choose one with --image-topic"
    if image_topic is None:
        images = [t for t, kind in topics.items() if kind in IMAGE_TYPES]
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


def write_timing(result_bag: str | Path, mode: str, bag: str | Path, frames: list[tuple[Stamp, int]],
                 rate: float | None = None, timeouts: int = 0, errors: list[str] | None = None) -> None:
    """The sidecar of a result bag (TIMING_FILE): how it was made and, per camera frame, its stamp and
    the wall time (ns) it was sent, which with the outputs' log times gives each frame's latency."""
    timing = {"mode": mode, "rate": rate, "bag": str(Path(bag).resolve()),
              "frames": [[sec, nsec, wall] for (sec, nsec), wall in frames], "timeouts": timeouts,
              "read_errors": errors or []}
    (Path(result_bag) / TIMING_FILE).write_text(json.dumps(timing))


def read_lane_bag(path: str | Path, image_topic: str | None = None, camera_info_topic: str | None = None,
                  truth_topic: str = TRUTH_LANES_TOPIC, tags_topic: str = TRUTH_TAGS_TOPIC) -> LaneBag:
    """One pass over the bag: image stamps of every image topic, ground truth and tags decoded."""
    reader = BagReader(path)
    topics: dict[str, str] = {}
    image_stamps: dict[str, list[Stamp]] = {}
    truth: dict[Stamp, LaneArray] = {}
    tags: dict[Stamp, tuple[str, ...]] = {}
    undecodable: list[BagError] = []
    for message in reader.messages():
        topics.setdefault(message.topic, message.msgtype)
        try:
            if message.msgtype in IMAGE_TYPES:
                image_stamps.setdefault(message.topic, []).append(cdr_stamp(message.data))
            elif message.topic == truth_topic:
                truth[cdr_stamp(message.data)] = message.decode()
            elif message.topic == tags_topic:
                tags[cdr_stamp(message.data)] = tuple(message.decode().tags)
        except BagError as error:
            undecodable.append(error)
    image_topic, camera_info_topic = camera_topics(topics, image_topic, camera_info_topic)
    return LaneBag(Path(path), image_topic, topics[image_topic] == IMAGE_TYPES[1], camera_info_topic,
                   image_stamps.get(image_topic, []), truth, tags, list(reader.errors) + undecodable)
