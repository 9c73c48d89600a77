"""The instance segmenter's per-frame work without a node: image (+ CameraInfo, + depth) in, InstanceArray
out. The instance_segmenter node runs it on what arrives over DDS and bag evaluation runs it offline on
the bag's messages, so the offline figures are those of the node's own code.

Grasps need metres, hence the camera matrix: without a CameraInfo the instances carry masks and boxes
only. A depth image gives each stick's height (stacked sticks are nearer the camera); without one the
sticks are taken to lie on the table at `table_distance_m`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from refine_msgs.msg import InstanceArray
from refine_perception.core.camera import CameraModelError
from refine_perception.core.image_codec import MAX_IMAGE_PIXELS, ImageFormatError
from refine_perception.instances.grasps import GraspSettings, add_grasps
from refine_perception.instances.predict import InstancePredictor
from refine_perception.instances.result import InstanceResult
from refine_perception.ros.image_convert import depth_to_metres, to_bgr
from refine_perception.ros.instance_messages import instance_array
from refine_perception.ros.messages import camera_from_info
from refine_perception.ros.node_base import settings_from_params
from refine_perception.share import INSTANCE_MODEL, shipped_model


def default_instance_model_path() -> Path:
    return shipped_model(INSTANCE_MODEL)


@dataclass
class InstanceSettings:
    """The instance_segmenter parameters that shape its output (same names and defaults as the node's)."""

    score_threshold: float = 0.5
    seed_threshold: float = 0.9
    min_pixels: int = 16
    max_instances: int = 64
    grasps: bool = True
    table_distance_m: float = 0.7
    grasp_margin_m: float = 0.01
    max_image_pixels: int = MAX_IMAGE_PIXELS

    @classmethod
    def from_params(cls, params: Any) -> InstanceSettings:
        return settings_from_params(cls, params)


def open_instance_predictor(model: str, device: str = "", threads: int = 0) -> tuple[InstancePredictor, str]:
    """The predictor of `model` (empty: the shipped default) and a description of where it runs;
    `threads` > 0 bounds the network's CPU threads in the thread that runs it only (other nodes of the
    process keep theirs). Raises ModelFileError for a missing or damaged file."""
    path = Path(model) if model else default_instance_model_path()
    target = device or "cpu"
    where = f"{threads} threads" if threads > 0 else "torch's default threads"
    return InstancePredictor.from_file(path, device=target, threads=threads), f"torch {target} fp32 ({where})"


class InstanceFrame(NamedTuple):
    """One frame's output: the InstanceArray, the decoded BGR image, the instances, what was wrong with
    the frame's optional inputs (each left out of the result: no grasps, or grasps on the table), and the
    camera matrix of a usable CameraInfo (None without one)."""

    instances: InstanceArray
    image: np.ndarray
    results: list[InstanceResult]
    problems: list[str]
    camera_matrix: np.ndarray | None


class InstancePipeline:
    """Per frame: decode the image, segment, add grasps when the camera is known, build the InstanceArray
    (header = the image's)."""

    def __init__(self, predictor: InstancePredictor, settings: InstanceSettings) -> None:
        self.predictor = predictor
        self.settings = settings

    def __call__(self, msg: Any, info: CameraInfo | None = None, depth: Image | None = None) -> InstanceFrame:
        """The instances of image message `msg`. A bad image raises ImageFormatError; a bad CameraInfo
        costs the grasps and a bad depth image the sticks' heights (each listed in `problems`)."""
        s = self.settings
        image = to_bgr(msg, s.max_image_pixels)
        height, width = image.shape[:2]
        self.predictor.settings = replace(self.predictor.settings, seed_threshold=s.seed_threshold,
                                          min_pixels=s.min_pixels, max_instances=s.max_instances)
        results = [r for r in self.predictor([image])[0] if r.score >= s.score_threshold]
        problems = []
        K = None
        if info is not None:
            try:
                K = camera_from_info(info, width, height).K
            except CameraModelError as error:
                problems.append(f"CameraInfo left out (no grasps): {error}")
        metres = None
        if depth is not None:
            try:
                metres = depth_to_metres(depth)
                if metres.shape != (height, width):
                    raise ImageFormatError(f"depth image {metres.shape[1]}x{metres.shape[0]} does not match the "
                                           f"{width}x{height} camera image")
            except ImageFormatError as error:
                metres = None
                problems.append(f"depth left out (sticks taken to lie on the table): {error}")
        if s.grasps and K is not None:
            results = add_grasps(results, K, s.table_distance_m, GraspSettings(margin_m=s.grasp_margin_m), metres)
        return InstanceFrame(instance_array(msg.header, (height, width), results), image, results, problems, K)
