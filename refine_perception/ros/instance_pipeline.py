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
from typing import Any

import numpy as np
import torch
from sensor_msgs.msg import CameraInfo, Image

from refine_msgs.msg import InstanceArray
from refine_perception.instances.grasps import GraspSettings, add_grasps
from refine_perception.instances.predict import InstancePredictor
from refine_perception.instances.result import InstanceResult
from refine_perception.ros.graph_runner import shipped_model
from refine_perception.ros.image_convert import depth_to_metres, to_bgr
from refine_perception.ros.instance_messages import instance_array
from refine_perception.ros.node_base import settings_from_params

DEFAULT_INSTANCE_MODEL = "spatial_embeddings_sticks.safetensors"


def default_instance_model_path() -> Path:
    return shipped_model(DEFAULT_INSTANCE_MODEL)


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

    @classmethod
    def from_params(cls, params: Any) -> InstanceSettings:
        return settings_from_params(cls, params)


def open_instance_predictor(model: str, device: str = "", threads: int = 0) -> tuple[InstancePredictor, str]:
    """The predictor of `model` (empty: the shipped default) and a description of where it runs.
    Raises ModelFileError for a missing or damaged file."""
    if threads > 0:
        torch.set_num_threads(threads)
    path = Path(model) if model else default_instance_model_path()
    target = device or "cpu"
    return InstancePredictor.from_file(path, device=target), f"torch {target} fp32 ({torch.get_num_threads()} threads)"


class InstancePipeline:
    """Per frame: decode the image, segment, add grasps when the camera is known, build the InstanceArray
    (header = the image's)."""

    def __init__(self, predictor: InstancePredictor, settings: InstanceSettings) -> None:
        self.predictor = predictor
        self.settings = settings

    def __call__(self, msg: Any, info: CameraInfo | None = None,
                 depth: Image | None = None) -> tuple[InstanceArray, np.ndarray, list[InstanceResult]]:
        """The InstanceArray of image message `msg`, the decoded BGR image and the instances."""
        s = self.settings
        image = to_bgr(msg)
        height, width = image.shape[:2]
        self.predictor.settings = replace(self.predictor.settings, seed_threshold=s.seed_threshold,
                                          min_pixels=s.min_pixels, max_instances=s.max_instances)
        results = [r for r in self.predictor([image])[0] if r.score >= s.score_threshold]
        if s.grasps and info is not None:
            if (info.width, info.height) != (width, height) or not any(info.k):
                raise ValueError(f"CameraInfo {info.width}x{info.height} with K {list(info.k)} does not describe "
                                 f"the {width}x{height} image")
            metres = None if depth is None else depth_to_metres(depth)
            if metres is not None and metres.shape != (height, width):
                raise ValueError(f"depth image {metres.shape[1]}x{metres.shape[0]} does not match the "
                                 f"{width}x{height} camera image")
            results = add_grasps(results, np.asarray(info.k, dtype=np.float64).reshape(3, 3), s.table_distance_m,
                                 GraspSettings(margin_m=s.grasp_margin_m), metres)
        return instance_array(msg.header, (height, width), results), image, results
