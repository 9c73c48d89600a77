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

from typing import Any

from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from refine_msgs.msg import LaneArray
from refine_perception.lanes.pipeline import LanePipeline, PipelineSettings, default_model_path, open_predictor
from refine_perception.models.clrnet.weights import ModelFileError
from refine_perception.ros.image_messages import numpy_to_image
from refine_perception.ros.lane_messages import draw_overlay, lane_markers, lanes_from_messages
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import RAW_INPUT_PARAMS, RUNTIME_PARAMS, STAMP_PARAMS, Param
from refine_perception.runtime import BackendError, UnsupportedCombination


class LaneDetector(PerceptionNode):
    TASK = "lane detector"
    DEFAULT_NAME = "lane_detector"
    PARAMS = (
        *RAW_INPUT_PARAMS,
        Param("transport", "raw", "Input: image_raw (raw) or image_raw/compressed (compressed)",
              choices=("raw", "compressed"), read_only=True),
        Param("model", "", "CLRNet weights (.safetensors from refine-train); empty = the shipped default",
              read_only=True),
        *RUNTIME_PARAMS,
        # the output-shaping parameters take their defaults from the pipeline's settings
        Param.of(PipelineSettings, "score_threshold", "Lanes scoring below this are dropped", min=0.0, max=1.0),
        Param.of(PipelineSettings, "nms_threshold", "Lane NMS: mean |dx| (px at 800 wide) under which lanes are "
                 "duplicates", min=0.0, max=800.0),
        Param.of(PipelineSettings, "max_lanes", "Most lanes kept per image", min=1, max=32),
        Param.of(PipelineSettings, "cut_height_ratio", "Fraction of the image height cropped off the top; -1 = the "
                 "model's", min=-1.0, max=0.95),
        Param("use_camera_info", True, "Match a CameraInfo to each image (by stamp) for ground projection",
              read_only=True),
        *STAMP_PARAMS,
        Param.of(PipelineSettings, "camera_height_m", "Camera height above the road (the static extrinsic a TF "
                 "lookup would give, as are the angles)", min=0.01, max=100.0),
        Param.of(PipelineSettings, "camera_pitch_rad", "Camera pitch, positive looks down", min=-1.5, max=1.5),
        Param.of(PipelineSettings, "camera_roll_rad", "Camera roll about the optical axis", min=-1.5, max=1.5),
        Param.of(PipelineSettings, "camera_yaw_rad", "Camera yaw, positive turns left", min=-3.2, max=3.2),
        Param.of(PipelineSettings, "ground_frame", "Frame of ground points and ground markers"),
        Param.of(PipelineSettings, "max_range_m", "Ground points further ahead are left out", min=1.0, max=1000.0),
        Param("image_frame", "lane_image", "Frame of the markers when there is no camera model"),
        Param.of(PipelineSettings, "tracking", "Give lanes ids that stay stable across frames"),
        Param.of(PipelineSettings, "max_missed", "Frames a lane may be missing and keep its id", min=0, max=1000),
        Param.of(PipelineSettings, "smoothing", "Weight of the new observation in a track's geometry", min=0.01,
                 max=1.0),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        p = self.params
        self.pipeline: LanePipeline | None = None
        try:
            predictor, cut_ratio, self.backend = open_predictor(p.model, p.backend, p.device, p.precision, p.threads)
            self.pipeline = LanePipeline(predictor, PipelineSettings.from_params(p), cut_ratio)
            self.get_logger().info(f"lanes from {p.model or default_model_path()} on {self.backend}")
        except (ModelFileError, BackendError, UnsupportedCombination, OSError) as error:
            self.model_error = f"model {p.model or default_model_path()} unavailable: {error}"
            self.get_logger().error(f"{self.model_error}; frames are counted as dropped until restarted")
        self.lanes_published = 0
        self._lanes_pub = self.create_publisher(LaneArray, "lanes", 10)
        self._markers_pub = self.create_publisher(MarkerArray, "lane_markers", 10)
        self._overlay_pub = self.create_publisher(Image, "debug_image", 1)
        image_type = Image if p.transport == "raw" else CompressedImage
        image_topic = "image_raw" if p.transport == "raw" else "image_raw/compressed"
        if p.use_camera_info:
            self.subscribe_synced_frames([(image_type, image_topic), (CameraInfo, "camera_info")], self._on_frame,
                                         optional={"camera_info": "lanes without ground points"})
        else:
            self.subscribe_frames(image_type, image_topic, lambda msg: self._on_frame(msg, None))

    def reset_state(self) -> None:
        if self.pipeline is not None:
            self.pipeline.reset()

    def _on_frame(self, msg: Image | CompressedImage, info: CameraInfo | None) -> None:
        assert self.pipeline is not None  # frames reach here only when the model opened
        # parameters that may change at run time (score/NMS thresholds, mounting, ...) take effect here
        self.pipeline.settings = PipelineSettings.from_params(self.params)
        lanes, frame = lanes_from_messages(self.pipeline, msg, info)
        self.input_problems(frame.problems)
        self._lanes_pub.publish(lanes)
        self.lanes_published += 1
        self._markers_pub.publish(lane_markers(lanes, image_frame=self.params.image_frame))
        if self._overlay_pub.get_subscription_count() > 0:
            overlay = numpy_to_image(draw_overlay(frame.image, lanes), "bgr8")
            overlay.header = msg.header
            self._overlay_pub.publish(overlay)

    # ---------------------------------------------------------------------------- diagnostics

    def diagnostic_values(self) -> dict[str, str]:
        return {"lane_arrays_published": str(self.lanes_published), "unmatched_camera_info": str(self.unmatched())}

    def report(self) -> dict[str, Any]:
        return {"lane_arrays_published": self.lanes_published, "backend": self.backend,
                "model_error": self.model_error}


def main(args: list[str] | None = None) -> int:
    return node_main(LaneDetector, args)
