"""The instance segmenter's per-frame work on plain data: a BGR image (+ the camera's calibration, + depth
in metres) in, instances (their masks refined along the boundary when a refiner is given) with grasps out.

No ROS here: the instance_segmenter node and the offline bag replay both reach it through the same
message conversion (ros/instance_messages.py), so the offline figures are those of the node's own code.

Grasps need metres, hence the camera matrix: without a calibration the instances carry masks and boxes
only. A depth image gives each stick's height (stacked sticks are nearer the camera); without one the
sticks are taken to lie on the table at `table_distance_m`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from refine_perception.boundaries.stage import BoundaryStage
from refine_perception.core.calibration import Calibration
from refine_perception.core.camera import CameraModelError, camera_for_image
from refine_perception.core.image_codec import MAX_IMAGE_PIXELS
from refine_perception.core.settings import FromParams
from refine_perception.instances.grasps import GraspSettings, add_grasps
from refine_perception.instances.predict import InstancePredictor, oriented_box
from refine_perception.instances.result import InstanceResult
from refine_perception.models.bpr.refine import INFERENCE_NMS
from refine_perception.runtime import RuntimeConfig
from refine_perception.share import INSTANCE_MODEL, shipped_model


def default_instance_model_path() -> Path:
    return shipped_model(INSTANCE_MODEL)


@dataclass
class InstanceSettings(FromParams):
    """The instance_segmenter parameters that shape its output (same names and defaults as the node's)."""

    score_threshold: float = 0.5
    seed_threshold: float = 0.9
    min_pixels: int = 16
    max_instances: int = 64
    grasps: bool = True
    table_distance_m: float = 0.7
    grasp_margin_m: float = 0.01
    max_image_pixels: int = MAX_IMAGE_PIXELS
    refine_boundaries: bool = False
    boundary_nms: float = INFERENCE_NMS


def open_instance_predictor(model: str, backend: str = "auto", device: str = "", precision: str = "auto",
                            threads: int = 0) -> tuple[InstancePredictor, str]:
    """The predictor of `model` (empty: the shipped default) on the runtime backend asked for, and a
    description of it; `threads` > 0 bounds the network's and the clustering's CPU threads for this predictor
    only (other nodes of the process keep theirs). Raises ModelFileError/BackendError/UnsupportedCombination."""
    path = Path(model) if model else default_instance_model_path()
    predictor, info = InstancePredictor.from_file(path, config=RuntimeConfig.of_node(backend, device, precision, threads))
    return predictor, str(info)


class InstanceFrame(NamedTuple):
    """One frame's output: the BGR image, the instances, what was wrong with the frame's optional inputs
    (each left out of the result: no grasps, or grasps on the table), and the camera matrix of a usable
    calibration (None without one)."""

    image: np.ndarray
    results: list[InstanceResult]
    problems: list[str]
    camera_matrix: np.ndarray | None


class InstancePipeline:
    """Per frame: segment, then add grasps when the camera is known."""

    def __init__(self, predictor: InstancePredictor, settings: InstanceSettings,
                 refiner: BoundaryStage | None = None) -> None:
        self.predictor = predictor
        self.settings = settings
        self.refiner = refiner  # refines the masks (and so the boxes and grasps) when refine_boundaries is set

    @staticmethod
    def depth_left_out(reason: object) -> str:
        """The problem a frame reports for a depth image it cannot use, whether it did not decode (the
        caller's side) or does not fit the camera image: the grasps are still made, sticks on the table."""
        return f"depth left out (sticks taken to lie on the table): {reason}"

    def __call__(self, image: np.ndarray, calibration: Calibration | None = None,
                 depth: np.ndarray | None = None) -> InstanceFrame:
        """The instances of BGR image `image`; `depth` is float32 metres along the optical axis (0 or NaN:
        no reading) at the image's size. A bad calibration costs the grasps and a depth of another size
        the sticks' heights (each listed in `problems`)."""
        s = self.settings
        height, width = image.shape[:2]
        self.predictor.settings = replace(self.predictor.settings, seed_threshold=s.seed_threshold,
                                          min_pixels=s.min_pixels, max_instances=s.max_instances)
        results = [r for r in self.predictor([image])[0] if r.score >= s.score_threshold]
        if self.refiner is not None and s.refine_boundaries and results:
            masks = self.refiner(image, [r.mask for r in results], s.boundary_nms)
            results = [replace(r, mask=mask, box=oriented_box(mask)) for r, mask in zip(results, masks) if mask.any()]
        problems = []
        K = None
        if calibration is not None:
            try:
                K = camera_for_image(calibration, width, height).K
            except CameraModelError as error:
                problems.append(f"CameraInfo left out (no grasps): {error}")
        if depth is not None and depth.shape != (height, width):
            problems.append(self.depth_left_out(f"depth image {depth.shape[1]}x{depth.shape[0]} does not match the "
                                                f"{width}x{height} camera image"))
            depth = None
        if s.grasps and K is not None:
            results = add_grasps(results, K, s.table_distance_m, GraspSettings(margin_m=s.grasp_margin_m), depth)
        return InstanceFrame(image, results, problems, K)
