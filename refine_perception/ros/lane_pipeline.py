"""The lane detector's per-frame work without a node: image message (+ CameraInfo) in, LaneArray out.

The lane_detector node runs it on what arrives over DDS and bag evaluation runs it offline on the bag's
messages, so the offline figures are those of the node's own code, not of a re-implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sensor_msgs.msg import CameraInfo

from refine_msgs.msg import LaneArray
from refine_perception.core.camera import CameraModelError, PinholeCamera
from refine_perception.core.image_codec import MAX_IMAGE_PIXELS
from refine_perception.lanes.backends import BackendConfig, open_lane_backend
from refine_perception.lanes.ground import project_lanes
from refine_perception.lanes.tracking import LaneTracker
from refine_perception.models.clrnet.decode import DecodeSettings
from refine_perception.models.clrnet.predict import LanePredictor
from refine_perception.ros.image_convert import to_bgr
from refine_perception.ros.lane_messages import lane_array
from refine_perception.ros.messages import camera_from_info
from refine_perception.ros.node_base import settings_from_params
from refine_perception.share import LANE_MODEL, shipped_model

CULANE_CUT_RATIO = 270 / 590


def default_model_path() -> Path:
    return shipped_model(LANE_MODEL)


@dataclass
class PipelineSettings:
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

    @classmethod
    def from_params(cls, params: Any) -> PipelineSettings:
        return settings_from_params(cls, params)


def open_predictor(model: str, backend: str = "auto", device: str = "", precision: str = "auto",
                   threads: int = 0) -> tuple[LanePredictor, float, str]:
    """The predictor of `model` (empty: the shipped default) on `backend`, the model's crop ratio and a
    description of the backend. Raises ModelFileError/BackendError/UnsupportedCombination/OSError."""
    path = Path(model) if model else default_model_path()
    opened = open_lane_backend(path, BackendConfig(backend=backend, device=device or None, precision=precision,
                                                   threads=threads))
    metadata = opened.metadata
    cut_ratio = CULANE_CUT_RATIO
    if metadata.get("cut_height") and metadata.get("ori_height"):
        cut_ratio = float(metadata["cut_height"]) / float(metadata["ori_height"])
    info = opened.info
    return (LanePredictor(opened, opened.input_size, DecodeSettings()), cut_ratio,
            f"{info.name} {info.device} {info.precision} ({info.provider})")


class LaneFrame(NamedTuple):
    """One frame's output: the LaneArray, the decoded BGR image, and what was wrong with the frame's
    optional inputs (each left out of the result, which is still complete without it)."""

    lanes: LaneArray
    image: np.ndarray
    problems: list[str]


class LanePipeline:
    """Per frame: decode the image (zero-copy for bgr8), predict, project onto the road plane when a
    usable CameraInfo is given, track, and build the LaneArray (header = the image's)."""

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

    def camera(self, info: CameraInfo, width: int, height: int) -> PinholeCamera:
        """The camera of `info` with the mounting parameters; CameraModelError when unusable."""
        s = self.settings
        return camera_from_info(info, width, height, {"mount_height": s.camera_height_m, "pitch": s.camera_pitch_rad,
                                                      "roll": s.camera_roll_rad, "yaw": s.camera_yaw_rad})

    def __call__(self, msg: Any, info: CameraInfo | None = None) -> LaneFrame:
        """The lanes of image message `msg` (Image or CompressedImage). A bad image raises
        ImageFormatError; a bad CameraInfo only costs the ground points (listed in `problems`)."""
        image = to_bgr(msg, self.settings.max_image_pixels)
        height, width = image.shape[:2]
        self.predictor.settings = self.decode_settings(width, height)
        prediction = self.predictor([image])[0]
        problems = []
        camera = None
        if info is not None:
            try:
                camera = self.camera(info, width, height)
            except CameraModelError as error:
                problems.append(f"CameraInfo left out: {error}")
        s = self.settings
        self.tracker.configure(max_missed=s.max_missed, smoothing=s.smoothing)
        ground = project_lanes(camera, prediction.lanes, max_range=s.max_range_m) if camera else None
        ids = self.tracker.update(prediction.lanes, ground) if s.tracking else None
        lanes = lane_array(msg.header, (height, width), prediction, ids, ground,
                           s.ground_frame if camera is not None else "")
        return LaneFrame(lanes, image, problems)
