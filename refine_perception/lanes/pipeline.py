"""The lane detector's per-frame work on plain data: a BGR image (+ the camera's calibration) in, lanes
with track ids and road-plane points out.

No ROS here: the lane_detector node and the offline bag replay both reach it through the same message
conversion (ros/lane_messages.py), so the offline figures are those of the node's own code, and a
program without ROS can run it on frames from anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from refine_perception.core.calibration import Calibration
from refine_perception.core.camera import CameraModelError, PinholeCamera, camera_for_image
from refine_perception.core.image_codec import MAX_IMAGE_PIXELS
from refine_perception.core.settings import FromParams
from refine_perception.lanes.ground import project_lanes
from refine_perception.lanes.tracking import LaneTracker
from refine_perception.models.clrnet.decode import DecodeSettings
from refine_perception.models.clrnet.predict import LanePrediction, LanePredictor
from refine_perception.models.clrnet.weights import FORMAT
from refine_perception.runtime import RuntimeConfig, open_task_network
from refine_perception.share import LANE_MODEL, shipped_model

CULANE_CUT_RATIO = 270 / 590


def default_model_path() -> Path:
    return shipped_model(LANE_MODEL)


@dataclass
class PipelineSettings(FromParams):
    """The lane_detector parameters that shape its output (same names and defaults as the node's)."""

    score_threshold: float = 0.4
    nms_threshold: float = 50.0
    max_lanes: int = 4
    cut_height_ratio: float = -1.0
    camera_height_m: float = 1.5
    camera_pitch_rad: float = 0.0
    camera_roll_rad: float = 0.0
    camera_yaw_rad: float = 0.0
    ground_frame: str = "base_footprint"
    max_range_m: float = 80.0
    tracking: bool = True
    max_missed: int = 2
    smoothing: float = 0.7
    max_image_pixels: int = MAX_IMAGE_PIXELS


def open_predictor(model: str, backend: str = "auto", device: str = "", precision: str = "auto",
                   threads: int = 0) -> tuple[LanePredictor, float, str]:
    """The predictor of `model` (empty: the shipped default) on `backend`, the model's crop ratio and a
    description of the backend. Raises ModelFileError/BackendError/UnsupportedCombination/OSError."""
    path = Path(model) if model else default_model_path()
    network = open_task_network(path, FORMAT, RuntimeConfig.of_node(backend, device, precision, threads))
    metadata = network.metadata
    cut_ratio = CULANE_CUT_RATIO
    if metadata.get("cut_height") is not None and metadata.get("ori_height"):  # a cut of 0 is a cut too
        cut_ratio = float(metadata["cut_height"]) / float(metadata["ori_height"])
    return LanePredictor(network, network.input_size, DecodeSettings()), cut_ratio, str(network.info)


class LaneFrame(NamedTuple):
    """One frame's lanes: the prediction (best first), their track ids (None untracked), their road-plane
    points and the frame those are in (None and "" without a usable camera), the BGR image, and what was
    wrong with the frame's optional inputs (each left out of the result, which is still complete without it)."""

    prediction: LanePrediction
    ids: list[int] | None
    ground: list[np.ndarray] | None
    ground_frame: str
    image: np.ndarray
    problems: list[str]


class LanePipeline:
    """Per frame: predict, project onto the road plane when a usable calibration is given, track."""

    def __init__(self, predictor: LanePredictor, settings: PipelineSettings, model_cut_ratio: float) -> None:
        self.predictor = predictor
        self.settings = settings
        self.model_cut_ratio = model_cut_ratio
        self.tracker = LaneTracker(max_missed=settings.max_missed, smoothing=settings.smoothing)

    def reset(self) -> None:
        """Forget the tracks (ids keep counting up, so an old id never names a new lane)."""
        self.tracker.reset()

    def decode_settings(self, width: int, height: int) -> DecodeSettings:
        s = self.settings
        ratio = self.model_cut_ratio if s.cut_height_ratio < 0 else s.cut_height_ratio
        return DecodeSettings(ori_width=width, ori_height=height, cut_height=min(int(round(ratio * height)), height - 1),
                              conf_threshold=s.score_threshold, nms_threshold=s.nms_threshold,
                              max_lanes=s.max_lanes)

    def camera(self, calibration: Calibration, width: int, height: int) -> PinholeCamera:
        """The camera of `calibration` with the mounting parameters; CameraModelError when unusable."""
        s = self.settings
        return camera_for_image(calibration, width, height, {"mount_height": s.camera_height_m,
                                                             "pitch": s.camera_pitch_rad, "roll": s.camera_roll_rad,
                                                             "yaw": s.camera_yaw_rad})

    def __call__(self, image: np.ndarray, calibration: Calibration | None = None) -> LaneFrame:
        """The lanes of BGR image `image`. A bad calibration only costs the ground points (listed in
        `problems`)."""
        height, width = image.shape[:2]
        self.predictor.settings = self.decode_settings(width, height)
        prediction = self.predictor([image])[0]
        problems = []
        camera = None
        if calibration is not None:
            try:
                camera = self.camera(calibration, width, height)
            except CameraModelError as error:
                problems.append(f"CameraInfo left out: {error}")
        s = self.settings
        self.tracker.configure(max_missed=s.max_missed, smoothing=s.smoothing)
        ground = project_lanes(camera, prediction.lanes, max_range=s.max_range_m) if camera else None
        ids = self.tracker.update(prediction.lanes, ground) if s.tracking else None
        return LaneFrame(prediction, ids, ground, s.ground_frame if camera is not None else "", image, problems)
