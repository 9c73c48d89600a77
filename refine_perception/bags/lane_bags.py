"""Lane datasets as bags, and bags as lane frames.

A lane bag holds, per frame and all with the image's header: the camera image (Image or
CompressedImage), its CameraInfo, the annotated lanes (refine_msgs/LaneArray on /ground_truth/lanes)
and the frame's tags such as the CULane category (refine_msgs/FrameTags on /ground_truth/tags).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refine_msgs.msg import FrameTags, LaneArray
from refine_perception.bags.frames import (
    CAMERA_INFO_TOPIC,
    IMAGE_TOPIC,
    Stamp,
    check_transport,
    scan_bag,
    stamped,
    write_camera_frame,
)
from refine_perception.bags.reader import BagError
from refine_perception.bags.writer import BagWriter
from refine_perception.core.calibration import Calibration
from refine_perception.core.frame_sources import SyntheticDriveSource, default_camera_matrix
from refine_perception.models.clrnet.head import LANE_COLORS, LANE_TYPES
from refine_perception.ros.lane_messages import truth_lane_array

TRUTH_LANES_TOPIC = "/ground_truth/lanes"
TRUTH_TAGS_TOPIC = "/ground_truth/tags"
DEFAULT_HFOV_DEG = 60.0


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


def write_lane_bag(path: str | Path, frames: Iterable[TruthFrame], storage: str = "mcap",
                   transport: str = "compressed", fps: float = 10.0, jpeg_quality: int = 90,
                   frame_id: str = "camera_optical_frame", ground_frame: str = "base_footprint",
                   image_topic: str = IMAGE_TOPIC, camera_info_topic: str = CAMERA_INFO_TOPIC,
                   overwrite: bool = False) -> int:
    """Write `frames` as a lane bag; returns the number of frames. Log times equal the header stamps."""
    check_transport(transport)
    count = 0
    with BagWriter(path, storage, overwrite=overwrite) as bag:
        for frame, header, time_ns in stamped(frames, fps, frame_id):
            height, width = frame.image.shape[:2]
            K = frame.camera_matrix if frame.camera_matrix is not None else default_camera_matrix(
                width, height, DEFAULT_HFOV_DEG)
            truth = truth_lane_array(header, (height, width), frame.lanes, frame.types, frame.colors, frame.ids,
                                     frame.ground, ground_frame if frame.ground is not None else "")
            bag.write(TRUTH_LANES_TOPIC, truth, time_ns)
            bag.write(TRUTH_TAGS_TOPIC, FrameTags(header=header, tags=list(frame.tags)), time_ns)
            write_camera_frame(bag, frame.image, Calibration.pinhole(width, height, np.asarray(K, float)), header,
                               time_ns, transport, jpeg_quality, image_topic, camera_info_topic)
            count += 1
    return count


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


def read_lane_bag(path: str | Path, image_topic: str | None = None, camera_info_topic: str | None = None,
                  truth_topic: str = TRUTH_LANES_TOPIC, tags_topic: str = TRUTH_TAGS_TOPIC) -> LaneBag:
    """One pass over the bag: image stamps of every image topic, ground truth and tags decoded."""
    scan = scan_bag(path, (truth_topic, tags_topic))
    image_topic, compressed, camera_info_topic, stamps = scan.camera(image_topic, camera_info_topic)
    tags = {stamp: tuple(msg.tags) for stamp, msg in scan.decoded[tags_topic].items()}
    return LaneBag(Path(path), image_topic, compressed, camera_info_topic, stamps, scan.decoded[truth_topic], tags,
                   scan.errors)
