"""instance_segmenter: camera images in, object instances out (refine_msgs/InstanceArray), with grasp poses
for pick-and-place (inside each instance, and all together as a geometry_msgs/PoseArray on `grasps`, best
first), RViz markers and a debug overlay.

Per frame: decode the image, run the instance network (discriminative loss or SpatialEmbeddings, as the
model file says) and its clustering, and, when a
CameraInfo (and optionally a depth image) matches the image's stamp, fit each stick's axis and give it a
parallel-gripper grasp in the camera's optical frame, scored by how surely nothing lies on it. The
overlay is only drawn while someone subscribes to it.

As in the lane detector, a missing or broken model file does not take the node down: it logs the reason,
reports it on /diagnostics (ERROR) and counts every frame it cannot process.
"""

from __future__ import annotations

from typing import Any

from geometry_msgs.msg import PoseArray
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from refine_msgs.msg import InstanceArray
from refine_perception.instances.pipeline import (
    InstancePipeline,
    InstanceSettings,
    default_instance_model_path,
    open_instance_predictor,
)
from refine_perception.models.model_file import ModelFileError
from refine_perception.ros.boundary_refinement import boundary_values, open_refiner
from refine_perception.ros.image_messages import numpy_to_image
from refine_perception.ros.instance_messages import (
    draw_instances,
    grasp_poses,
    instance_markers,
    instances_from_messages,
)
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import RAW_INPUT_PARAMS, RUNTIME_PARAMS, STAMP_PARAMS, Param, boundary_params
from refine_perception.runtime import BackendError, UnsupportedCombination


class InstanceSegmenter(PerceptionNode):
    TASK = "instance segmenter"
    DEFAULT_NAME = "instance_segmenter"
    PARAMS = (
        *RAW_INPUT_PARAMS,
        Param("transport", "raw", "Input: image_raw (raw) or image_raw/compressed (compressed)",
              choices=("raw", "compressed"), read_only=True),
        Param("model", "", "Instance weights (.safetensors from refine-train instances, either formulation); "
              "empty = the shipped default", read_only=True),
        *RUNTIME_PARAMS,
        *boundary_params(InstanceSettings),
        # the output-shaping parameters take their defaults from the pipeline's settings
        Param.of(InstanceSettings, "score_threshold", "Instances scoring below this are dropped (score: the "
                 "seed's, or for a discriminative-loss instance its class probability discounted for small size "
                 "and loose embeddings)", min=0.0, max=1.0),
        Param.of(InstanceSettings, "seed_threshold", "SpatialEmbeddings clustering: weakest seed that may start "
                 "an instance", min=0.0, max=1.0),
        Param.of(InstanceSettings, "min_pixels", "Smallest instance, in pixels at the network's resolution",
                 min=1, max=100000),
        Param.of(InstanceSettings, "max_instances", "Most instances per image", min=1, max=1000),
        Param.of(InstanceSettings, "grasps", "Give each stick a grasp (needs use_camera_info)"),
        Param("use_camera_info", True, "Match a CameraInfo to each image (by stamp): grasps need the camera matrix",
              read_only=True),
        Param("use_depth", True, "Also match a depth image (depth/image_raw, 16UC1 mm or 32FC1 m) for the "
              "sticks' heights", read_only=True),
        *STAMP_PARAMS,
        Param.of(InstanceSettings, "table_distance_m", "Camera to table along the optical axis, used where "
                 "there is no depth", min=0.01, max=100.0),
        Param.of(InstanceSettings, "grasp_margin_m", "Gripper opening beyond the stick's width", min=0.0,
                 max=1.0),
        Param("marker_score_threshold", 0.5, "Grasps scoring at least this are drawn green, others vermillion",
              min=0.0, max=1.0),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        p = self.params
        self.pipeline: InstancePipeline | None = None
        self.boundary_error = ""
        try:
            predictor, self.backend = open_instance_predictor(p.model, p.backend, p.device, p.precision, p.threads)
            refiner, self.boundary_error = open_refiner(self, "sticks")
            self.pipeline = InstancePipeline(predictor, InstanceSettings.from_params(p), refiner)
            self.get_logger().info(f"instances from {p.model or default_instance_model_path()} on {self.backend}")
        except (ModelFileError, BackendError, UnsupportedCombination, OSError) as error:
            self.model_error = f"model {p.model or default_instance_model_path()} unavailable: {error}"
            self.get_logger().error(f"{self.model_error}; frames are counted as dropped until restarted")
        self.arrays_published = 0
        self._instances_pub = self.create_publisher(InstanceArray, "instances", 10)
        self._grasps_pub = self.create_publisher(PoseArray, "grasps", 10)
        self._markers_pub = self.create_publisher(MarkerArray, "instance_markers", 10)
        self._overlay_pub = self.create_publisher(Image, "debug_image", 1)
        image_type = Image if p.transport == "raw" else CompressedImage
        inputs: list[tuple[type, str]] = [(image_type, "image_raw" if p.transport == "raw" else "image_raw/compressed")]
        if p.use_camera_info:
            inputs.append((CameraInfo, "camera_info"))
            if p.use_depth:
                inputs.append((Image, "depth/image_raw"))
        if len(inputs) > 1:
            self.subscribe_synced_frames(inputs, self._on_frame, optional={
                "camera_info": "instances without grasps",
                "depth/image_raw": "grasps take the sticks to lie on the table (table_distance_m)",
            })
        else:
            self.subscribe_frames(image_type, inputs[0][1], self._on_frame)

    def _on_frame(self, msg: Image | CompressedImage, info: CameraInfo | None = None,
                  depth: Image | None = None) -> None:
        assert self.pipeline is not None  # frames reach here only when the model opened
        self.pipeline.settings = InstanceSettings.from_params(self.params)
        instances, frame = instances_from_messages(self.pipeline, msg, info, depth)
        self.input_problems(frame.problems)
        self._instances_pub.publish(instances)
        self._grasps_pub.publish(grasp_poses(instances))
        self.arrays_published += 1
        self._markers_pub.publish(instance_markers(instances, score_threshold=self.params.marker_score_threshold))
        if self._overlay_pub.get_subscription_count() > 0:
            overlay = numpy_to_image(draw_instances(frame.image, frame.results, frame.camera_matrix,
                                                    score_threshold=self.params.marker_score_threshold), "bgr8")
            overlay.header = msg.header
            self._overlay_pub.publish(overlay)

    def diagnostic_values(self) -> dict[str, str]:
        refiner = self.pipeline.refiner if self.pipeline is not None else None
        return {"instance_arrays_published": str(self.arrays_published), "unmatched_inputs": str(self.unmatched()),
                **boundary_values(refiner, self.boundary_error)}

    def report(self) -> dict[str, Any]:
        return {"instance_arrays_published": self.arrays_published, "backend": self.backend,
                "model_error": self.model_error}


def main(args: list[str] | None = None) -> int:
    return node_main(InstanceSegmenter, args)
