"""street_segmenter: camera images in; a semantic label image (mono8 Cityscapes label ids), the ClassMap
naming its values (latched), car and person instances with track ids (refine_msgs/InstanceArray), RViz
outlines of them and a colour overlay out.

Per frame: decode the image, run the label refinement network (`stage` picks the map published, 1 =
coarsest .. 5 = finest; without instances the network stops there), cluster the instance classes'
pixels by their embeddings, keep each object's id while its mask overlaps its last one. /diagnostics shows
the milliseconds of each phase (network, label map, instances, tracking). The overlay is only drawn while
someone subscribes to it.

As in the other nodes, a missing or broken model file does not take the node down: it logs the reason,
reports it on /diagnostics (ERROR) and counts every frame it cannot process.
"""

from __future__ import annotations

from typing import Any

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from refine_msgs.msg import ClassMap, InstanceArray
from refine_perception.core.camera import CameraModelError, camera_for_image
from refine_perception.models.lrn.network import STAGE_STRIDES
from refine_perception.models.model_file import ModelFileError
from refine_perception.ros.boundary_refinement import boundary_values, open_refiner
from refine_perception.ros.image_messages import numpy_to_image
from refine_perception.ros.messages import calibration_from_info
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import RAW_INPUT_PARAMS, RUNTIME_PARAMS, STAMP_PARAMS, Param, boundary_params
from refine_perception.ros.street_messages import class_map, draw_street, street_from_messages, street_markers
from refine_perception.runtime import BackendError, UnsupportedCombination
from refine_perception.segmentation.pipeline import (
    VOID_LABEL_ID,
    StreetPipeline,
    StreetSettings,
    default_street_model_path,
    open_street_predictor,
)

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
TIMING_SMOOTHING = 0.1  # weight of the newest frame in the phase times on /diagnostics


class StreetSegmenter(PerceptionNode):
    TASK = "street segmenter"
    DEFAULT_NAME = "street_segmenter"
    PARAMS = (
        *RAW_INPUT_PARAMS,
        Param("transport", "raw", "Input: image_raw (raw) or image_raw/compressed (compressed)",
              choices=("raw", "compressed"), read_only=True),
        Param("model", "", "Street weights (.safetensors from refine-train street); empty = the shipped default",
              read_only=True),
        *RUNTIME_PARAMS,
        *boundary_params(StreetSettings),
        Param.of(StreetSettings, "stage", f"Label map published: 1 = coarsest (1/{STAGE_STRIDES[0]}) .. "
                 f"{len(STAGE_STRIDES)} = finest (1/{STAGE_STRIDES[-1]}); without instances the network stops "
                 "there, which saves the finer stages' time", min=1, max=len(STAGE_STRIDES), read_only=True),
        Param.of(StreetSettings, "instances", "Segment car and person instances (they need every stage)",
                 read_only=True),
        Param.of(StreetSettings, "score_threshold", "Instances scoring below this (class probability discounted "
                 "for small size and loose embeddings) are dropped", min=0.0, max=1.0),
        Param.of(StreetSettings, "track_iou", "Least mask IoU with its last mask for an instance to keep its id",
                 min=0.01, max=1.0),
        Param.of(StreetSettings, "track_max_missed", "Frames an unseen instance keeps its id", min=0, max=1000),
        Param("use_camera_info", True, "Match a CameraInfo to each image (by stamp): the outline markers need "
              "the camera matrix", read_only=True),
        *STAMP_PARAMS,
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        p = self.params
        self.pipeline: StreetPipeline | None = None
        self.boundary_error = ""
        self.arrays_published = 0
        self.timings_ms: dict[str, float] = {}
        self._labels_pub = self.create_publisher(Image, "labels", 10)
        self._class_map_pub = self.create_publisher(ClassMap, "class_map", LATCHED)
        self._instances_pub = self.create_publisher(InstanceArray, "instances", 10)
        self._markers_pub = self.create_publisher(MarkerArray, "instance_markers", 10)
        self._overlay_pub = self.create_publisher(Image, "debug_image", 1)
        try:
            settings = StreetSettings.from_params(p)
            predictor, self.backend = open_street_predictor(p.model, p.backend, p.device, p.precision, p.threads,
                                                            settings)
            refiner, self.boundary_error = open_refiner(self, "street")
            self.pipeline = StreetPipeline(predictor, settings, refiner)
            meta = predictor.metadata
            self._class_map_pub.publish(class_map(Header(stamp=self.get_clock().now().to_msg()),
                                                  predictor.class_names, predictor.label_ids,
                                                  meta["instance_classes"], VOID_LABEL_ID))
            self.get_logger().info(f"street segmentation from {p.model or default_street_model_path()} on {self.backend}")
        except (ModelFileError, BackendError, UnsupportedCombination, OSError, ValueError) as error:
            self.model_error = f"model {p.model or default_street_model_path()} unavailable: {error}"
            self.get_logger().error(f"{self.model_error}; frames are counted as dropped until restarted")
        image_type = Image if p.transport == "raw" else CompressedImage
        image_topic = "image_raw" if p.transport == "raw" else "image_raw/compressed"
        if p.use_camera_info:
            self.subscribe_synced_frames([(image_type, image_topic), (CameraInfo, "camera_info")], self._on_frame,
                                         optional={"camera_info": "no outline markers"})
        else:
            self.subscribe_frames(image_type, image_topic, self._on_frame)

    def reset_state(self) -> None:
        if self.pipeline is not None:
            self.pipeline.tracker.reset()

    def _on_frame(self, msg: Image | CompressedImage, info: CameraInfo | None = None) -> None:
        assert self.pipeline is not None  # frames reach here only when the model opened
        self.pipeline.settings = StreetSettings.from_params(self.params)
        labels, instances, frame = street_from_messages(self.pipeline, msg)
        K, problems = None, []
        if info is not None:
            try:
                K = camera_for_image(calibration_from_info(info), *frame.image.shape[1::-1]).K
            except CameraModelError as error:
                problems.append(f"CameraInfo left out (no outline markers): {error}")
        self.input_problems(problems)
        self._labels_pub.publish(labels)
        self._instances_pub.publish(instances)
        self.arrays_published += 1
        self._markers_pub.publish(street_markers(instances, frame.results, K))
        if self._overlay_pub.get_subscription_count() > 0:
            self._overlay_pub.publish(numpy_to_image(draw_street(frame), "bgr8", msg.header))
        for phase, ms in frame.timings_ms.items():
            old = self.timings_ms.get(phase)
            self.timings_ms[phase] = ms if old is None else old + TIMING_SMOOTHING * (ms - old)

    def diagnostic_values(self) -> dict[str, str]:
        times = {f"{phase}_ms": f"{ms:.1f}" for phase, ms in self.timings_ms.items()}
        refiner = self.pipeline.refiner if self.pipeline is not None else None
        return {"instance_arrays_published": str(self.arrays_published), "unmatched_inputs": str(self.unmatched()),
                **times, **boundary_values(refiner, self.boundary_error)}

    def report(self) -> dict[str, Any]:
        return {"instance_arrays_published": self.arrays_published, "backend": self.backend,
                "model_error": self.model_error, "timings_ms": dict(self.timings_ms)}


def main(args: list[str] | None = None) -> int:
    return node_main(StreetSegmenter, args)
