"""lane_detector: camera images in, lanes out (refine_msgs/LaneArray), with RViz markers and a debug
overlay.

Per frame: decode the image (zero-copy for bgr8), run CLRNet on the configured backend, decode the lanes
to the full-resolution image, project them onto the road plane when a CameraInfo matches the image's
stamp (mounting from parameters: the static extrinsic a TF lookup would give), track them so ids stay
stable, and publish. The overlay image is only drawn while someone subscribes to it.

A model file that is missing or broken does not take the node down: it logs the reason once, reports
it on /diagnostics (ERROR) and counts every frame it cannot process, so a launch with a typo stays
inspectable instead of crash-looping.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from refine_msgs.msg import LaneArray
from refine_perception.core.camera import CameraModelError, PinholeCamera
from refine_perception.lanes.backends import BackendConfig, BackendError, UnsupportedCombination, open_lane_backend
from refine_perception.lanes.ground import project_lanes
from refine_perception.lanes.tracking import LaneTracker
from refine_perception.models.clrnet.decode import DecodeSettings
from refine_perception.models.clrnet.predict import LanePredictor
from refine_perception.models.clrnet.weights import ModelFileError
from refine_perception.ros.graph_runner import share_dir
from refine_perception.ros.image_convert import compressed_to_numpy, image_to_numpy, numpy_to_image
from refine_perception.ros.lane_messages import draw_overlay, lane_array, lane_markers
from refine_perception.ros.node_base import INPUT_PARAMS, Param, PerceptionNode, node_main

DEFAULT_MODEL = "clrnet_r18_synthetic.safetensors"
_ERROR = 2


def default_model_path() -> Path:
    """The shipped default weights: share/refine_perception/models, or the source tree's models/."""
    return share_dir() / "models" / DEFAULT_MODEL


class LaneDetector(PerceptionNode):
    TASK = "lane detector"
    DEFAULT_NAME = "lane_detector"
    PARAMS = (
        # reliable, still depth 1 (only the newest frame): with Fast DDS's defaults a best-effort
        # subscription loses most 3 MB raw images sent from another process (one lost UDP fragment
        # loses the image); reliable has them resent. sensor_data suits compressed or same-process input.
        replace(INPUT_PARAMS[0], default="reliable"),
        *INPUT_PARAMS[1:],
        Param("transport", "raw", "Input: image_raw (raw) or image_raw/compressed (compressed)",
              choices=("raw", "compressed"), read_only=True),
        Param("model", "", "CLRNet weights (.safetensors from refine-train); empty = the shipped default",
              read_only=True),
        Param("backend", "auto", "Inference backend; auto picks the fastest available",
              choices=("auto", "torch", "onnxruntime", "tensorrt"), read_only=True),
        Param("device", "", "cpu, cuda or cuda:N; empty = the backend's best", read_only=True),
        Param("precision", "fp32", "fp16 on CUDA backends only", choices=("fp32", "fp16"), read_only=True),
        Param("threads", 0, "CPU threads of the backend (0 = its default)", min=0, max=256, read_only=True),
        Param("score_threshold", 0.4, "Lanes scoring below this are dropped", min=0.0, max=1.0),
        Param("nms_threshold", 50.0, "Lane NMS: mean |dx| (px at 800 wide) under which lanes are duplicates",
              min=0.0, max=800.0),
        Param("max_lanes", 4, "Most lanes kept per image", min=1, max=32),
        Param("cut_height_ratio", -1.0, "Fraction of the image height cropped off the top; -1 = the model's",
              min=-1.0, max=0.95),
        Param("use_camera_info", True, "Match a CameraInfo to each image (by stamp) for ground projection",
              read_only=True),
        Param("sync_slop_s", 0.02, "Largest image/CameraInfo stamp difference that still matches", min=0.0,
              max=1.0, read_only=True),
        Param("camera_height_m", 1.5, "Camera height above the road (static extrinsic)", min=0.01, max=100.0),
        Param("camera_pitch_rad", 0.0, "Camera pitch, positive looks down", min=-1.5, max=1.5),
        Param("camera_roll_rad", 0.0, "Camera roll about the optical axis", min=-1.5, max=1.5),
        Param("camera_yaw_rad", 0.0, "Camera yaw, positive turns left", min=-3.2, max=3.2),
        Param("ground_frame", "base_footprint", "Frame of ground points and ground markers"),
        Param("max_range_m", 80.0, "Ground points further ahead are left out", min=1.0, max=1000.0),
        Param("image_frame", "lane_image", "Frame of the markers when there is no camera model"),
        Param("tracking", True, "Give lanes ids that stay stable across frames"),
        Param("max_missed", 2, "Frames a lane may be missing and keep its id", min=0, max=1000),
        Param("smoothing", 0.7, "Weight of the new observation in a track's geometry", min=0.01, max=1.0),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        p = self.params
        self.model_error = ""
        self.predictor: LanePredictor | None = None
        self.model_cut_ratio = 270 / 590
        self._load_model()
        self.tracker = LaneTracker(max_missed=p.max_missed, smoothing=p.smoothing)
        self.lanes_published = 0
        self._lanes_pub = self.create_publisher(LaneArray, "lanes", 10)
        self._markers_pub = self.create_publisher(MarkerArray, "lane_markers", 10)
        self._overlay_pub = self.create_publisher(Image, "debug_image", 1)
        image_type = Image if p.transport == "raw" else CompressedImage
        image_topic = "image_raw" if p.transport == "raw" else "image_raw/compressed"
        if p.use_camera_info:
            self.subscribe_frame_pairs(image_type, image_topic, CameraInfo, "camera_info", self._on_frame,
                                       p.sync_slop_s)
        else:
            self.subscribe_frames(image_type, image_topic, lambda msg: self._on_frame(msg, None))

    def _load_model(self) -> None:
        p = self.params
        path = Path(p.model) if p.model else default_model_path()
        try:
            backend = open_lane_backend(path, BackendConfig(backend=p.backend, device=p.device or None,
                                                            precision=p.precision, threads=p.threads))
        except (ModelFileError, BackendError, UnsupportedCombination, OSError) as error:
            self.model_error = f"model {path} unavailable: {error}"
            self.get_logger().error(f"{self.model_error}; frames are counted as dropped until restarted")
            return
        metadata = backend.metadata
        if metadata.get("cut_height") and metadata.get("ori_height"):
            self.model_cut_ratio = float(metadata["cut_height"]) / float(metadata["ori_height"])
        self.predictor = LanePredictor(backend, backend.input_size, DecodeSettings())
        info = backend.info
        self.backend = f"{info.name} {info.device} {info.precision} ({info.provider})"
        self.get_logger().info(f"lanes from {path} on {self.backend}")

    # --------------------------------------------------------------------------------- frames

    def _settings(self, height: int) -> DecodeSettings:
        p = self.params
        ratio = self.model_cut_ratio if p.cut_height_ratio < 0 else p.cut_height_ratio
        return DecodeSettings(cut_height=min(int(round(ratio * height)), height - 1),
                              conf_threshold=p.score_threshold, nms_threshold=p.nms_threshold,
                              max_lanes=p.max_lanes)

    def _camera(self, info: CameraInfo | None, width: int, height: int) -> PinholeCamera | None:
        if info is None:
            return None
        if (info.width, info.height) != (width, height) or not any(info.k):
            raise CameraModelError(f"CameraInfo {info.width}x{info.height} with K {list(info.k)} does not "
                                   f"describe the {width}x{height} image")
        p = self.params
        return PinholeCamera.from_camera_info(
            {"k": np.asarray(info.k).reshape(3, 3), "d": list(info.d), "width": info.width, "height": info.height,
             "distortion_model": info.distortion_model},
            {"mount_height": p.camera_height_m, "pitch": p.camera_pitch_rad, "roll": p.camera_roll_rad,
             "yaw": p.camera_yaw_rad},
        )

    def _on_frame(self, msg: Image | CompressedImage, info: CameraInfo | None) -> None:
        if self.predictor is None:
            self.counters.count_dropped("no_model")
            return
        image = image_to_numpy(msg, desired="bgr8") if isinstance(msg, Image) else compressed_to_numpy(msg, "bgr8")
        height, width = image.shape[:2]
        self.predictor.settings = self._settings(height)
        prediction = self.predictor([image])[0]
        camera = self._camera(info, width, height)
        ground = project_lanes(camera, prediction.lanes, max_range=self.params.max_range_m) if camera else None
        ids = None
        if self.params.tracking:
            ids = self.tracker.update(prediction.lanes, ground)
        lanes = lane_array(msg.header, (height, width), prediction, ids, ground,
                           self.params.ground_frame if camera is not None else "")
        self._lanes_pub.publish(lanes)
        self.lanes_published += 1
        self._markers_pub.publish(lane_markers(lanes, image_frame=self.params.image_frame))
        if self._overlay_pub.get_subscription_count() > 0:
            overlay = numpy_to_image(draw_overlay(image, lanes), "bgr8")
            overlay.header = msg.header
            self._overlay_pub.publish(overlay)

    # ---------------------------------------------------------------------------- diagnostics

    def diagnostic_values(self) -> dict[str, str]:
        values = {"lane_arrays_published": str(self.lanes_published), "unmatched_camera_info": str(self.unmatched())}
        if self.model_error:
            values["model_error"] = self.model_error
        return values

    def status_summary(self) -> tuple[int, str, dict[str, str]]:
        level, message, values = super().status_summary()
        if self.model_error:
            return _ERROR, self.model_error, values
        return level, message, values

    def report(self) -> dict[str, Any]:
        return {"lane_arrays_published": self.lanes_published, "backend": self.backend,
                "model_error": self.model_error}


def main(args: list[str] | None = None) -> int:
    return node_main(LaneDetector, args)
