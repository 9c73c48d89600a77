"""camera_source: publishes a video file or an image folder as a camera (Image or CompressedImage,
plus CameraInfo), at a fixed rate or in lock-step with a consumer. A synthetic drive also publishes its
exact lanes on ground_truth/lanes (refine_msgs/LaneArray, same header as the image), for live scoring;
synthetic sticks scenes also their depth on depth/image_raw (Image 16UC1, millimetres, same header as
the image, as the sticks bags hold it), so the instance segmenter's grasps get the sticks' heights."""

from __future__ import annotations

import threading
import time
from typing import Any

from rclpy.duration import Duration
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from refine_msgs.msg import LaneArray
from refine_perception.core.calibration import Calibration, load_calibration
from refine_perception.core.frame_sources import (
    DEFAULT_SOURCE,
    Frame,
    FrameSource,
    SyntheticDriveSource,
    SyntheticSticksSource,
    default_camera_matrix,
    open_source,
)
from refine_perception.core.image_codec import ENCODINGS
from refine_perception.ros.image_messages import numpy_to_compressed, numpy_to_image
from refine_perception.ros.lane_messages import ground_truth_lanes
from refine_perception.ros.messages import camera_info_message, import_message_type
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import QOS_CHOICES, Param, qos_from_name


class CameraSource(PerceptionNode):
    TASK = "camera source"
    DEFAULT_NAME = "camera_source"
    PARAMS = (
        Param("source", "", "Video file, image folder, glob, synthetic:drive?..., synthetic:sticks?... or "
              "synthetic:street?... (see core.frame_sources); empty = the embedded sample drive", read_only=True),
        Param("loop", True, "Start again at the end of the source"),
        Param("max_frames", 0, "Stop after this many frames (0 = no limit)", min=0, max=2**31 - 1),
        Param(
            "rate_hz",
            10.0,
            "Publish rate; 0 = lock-step: each frame waits until the previous one was taken (see pace_topic)",
            min=0.0,
            max=10000.0,
        ),
        Param("transport", "compressed", "raw publishes image_raw, compressed publishes image_raw/compressed",
              choices=("raw", "compressed"), read_only=True),
        Param("encoding", "bgr8", "Encoding of raw images", choices=tuple(ENCODINGS)),
        Param("compressed_format", "jpeg", "Format of compressed images", choices=("jpeg", "png")),
        Param("jpeg_quality", 90, "JPEG quality of compressed images", min=1, max=100),
        Param("frame_id", "camera_optical_frame", "frame_id of the published headers"),
        Param("ground_frame", "base_footprint", "Frame of the synthetic drive's ground-truth ground points"),
        Param("camera_info_file", "", "ROS camera_calibration YAML; empty = the source's own or a pinhole model",
              read_only=True),
        Param("hfov_deg", 60.0, "Horizontal field of view of the fallback pinhole model", min=1.0, max=179.0),
        Param("output_qos", "reliable", "QoS of the published topics (REP-2003: drivers publish reliable)",
              choices=QOS_CHOICES, read_only=True),
        Param("output_depth", 1, "Queue depth of the published topics", min=1, max=100, read_only=True),
        Param("wait_for_subscribers", True, "Hold the first frame until the image topic has a subscriber"),
        Param("pace_topic", "", "In lock-step mode, wait for a message on this topic stamped like the frame",
              read_only=True),
        Param("pace_type", "refine_msgs/msg/LaneArray", "Message type of pace_topic", read_only=True),
        Param("pace_timeout_s", 5.0, "Give up waiting for pace_topic after this long (counted)", min=0.01, max=600.0),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        p = self.params
        self.source: FrameSource = open_source(p.source or DEFAULT_SOURCE)
        self.calibration = load_calibration(p.camera_info_file) if p.camera_info_file else None
        qos: QoSProfile = qos_from_name(p.output_qos, p.output_depth)
        if p.transport == "raw":
            self._image_pub = self.create_publisher(Image, "image_raw", qos)
        else:
            self._image_pub = self.create_publisher(CompressedImage, "image_raw/compressed", qos)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self._truth_pub = None
        if isinstance(self.source, SyntheticDriveSource):
            self._truth_pub = self.create_publisher(LaneArray, "ground_truth/lanes", qos)
        self._depth_pub = None
        if isinstance(self.source, SyntheticSticksSource):
            self._depth_pub = self.create_publisher(Image, "depth/image_raw", qos)
        self.finished = threading.Event()
        self._paced_stamp: tuple[int, int] | None = None
        self._pace_event = threading.Event()
        if p.pace_topic:
            self.create_subscription(import_message_type(p.pace_type), p.pace_topic, self._on_pace, 10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish_loop, name="camera_source", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"publishing {self.source.name} ({len(self.source)} frames) on "
            f"{self._image_pub.topic_name} at {'lock-step' if p.rate_hz == 0 else f'{p.rate_hz:g} Hz'}"
        )

    def _frames(self) -> Any:
        while True:
            yield from self.source
            if not self.params.loop:
                return

    def _publish_loop(self) -> None:
        p = self.params
        while p.wait_for_subscribers and not self._stop.is_set() and self._image_pub.get_subscription_count() == 0:
            time.sleep(0.02)
        # Under use_sim_time the clock reads zero until the first /clock message: stamps must not.
        while not self._stop.is_set() and self.get_clock().now().nanoseconds == 0:
            time.sleep(0.01)
        next_time = time.monotonic()
        for frame in self._frames():
            if self._stop.is_set() or (p.max_frames and self.published >= p.max_frames):
                break
            if p.rate_hz > 0:
                delay = next_time - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_time = max(next_time + 1.0 / p.rate_hz, time.monotonic() - 1.0 / p.rate_hz)
            stamp = self.get_clock().now().to_msg()
            self._pace_event.clear()
            self._paced_stamp = (stamp.sec, stamp.nanosec)
            self._publish(frame, stamp)
            if p.rate_hz == 0:
                self._wait_until_taken()
        self.finished.set()
        self.get_logger().info(f"source finished after {self.published} frames")

    def _publish(self, frame: Frame, stamp: Any) -> None:
        p = self.params
        if p.transport == "raw":
            msg = numpy_to_image(frame.image, p.encoding, source_encoding="bgr8")
        else:
            msg = numpy_to_compressed(frame.image, p.compressed_format, p.jpeg_quality)
        msg.header.stamp = stamp
        msg.header.frame_id = p.frame_id
        info = self._camera_info(frame)
        info.header = msg.header
        self._info_pub.publish(info)
        if self._truth_pub is not None:
            self._truth_pub.publish(ground_truth_lanes(msg.header, frame.extras["sample"], p.ground_frame))
        if self._depth_pub is not None:  # before the image, like the CameraInfo: a consumer matching by stamp has it
            self._depth_pub.publish(numpy_to_image(frame.extras["depth"], "16UC1", msg.header))
        self._image_pub.publish(msg)
        self.counters.count_processed()
        self.input_rate.tick(time.monotonic())

    def _camera_info(self, frame: Frame) -> CameraInfo:
        height, width = frame.image.shape[:2]
        calib = self.calibration
        if calib is None:
            K = frame.camera_matrix if frame.camera_matrix is not None else default_camera_matrix(
                width, height, self.params.hfov_deg
            )
            calib = Calibration.pinhole(width, height, K)
        elif (calib.width, calib.height) != (width, height):
            self.get_logger().warning(
                f"calibration is for {calib.width}x{calib.height} but frames are {width}x{height}",
                throttle_duration_sec=10.0,
            )
        return camera_info_message(calib)

    def _wait_until_taken(self) -> None:
        p = self.params
        if p.pace_topic:
            if not self._pace_event.wait(p.pace_timeout_s) and not self._stop.is_set():
                self.counters.count_dropped("pace_timeout")
        elif not self._image_pub.wait_for_all_acked(Duration(nanoseconds=int(p.pace_timeout_s * 1e9))):
            self.counters.count_dropped("pace_timeout")

    def _on_pace(self, msg: Any) -> None:
        stamp = msg.header.stamp
        if (stamp.sec, stamp.nanosec) == self._paced_stamp:
            self._pace_event.set()

    @property
    def published(self) -> int:
        return self.counters.processed

    def diagnostic_values(self) -> dict[str, str]:
        return {"source": self.source.name}

    def report(self) -> dict[str, Any]:
        return {"published": self.published, "source": self.source.name}

    def stop(self) -> None:
        self._stop.set()
        self._pace_event.set()
        self._thread.join(timeout=5.0)
        super().stop()


def main(args: list[str] | None = None) -> int:
    return node_main(CameraSource, args)
