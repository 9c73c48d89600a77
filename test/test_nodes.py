"""The camera graph's nodes over real DDS: frames, headers, camera info, diagnostics, malformed input,
lock-step pacing, sim time and shutdown by signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from refine_perception.ros.camera_source import CameraSource
from refine_perception.ros.image_converter import ImageConverter

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
CAMERA_REMAPS = ["-r", "image_raw:=camera/image_raw", "-r", "image_raw/compressed:=camera/image_raw/compressed",
                 "-r", "camera_info:=camera/camera_info", "-r", "image:=camera/image"]


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    for i in range(6):
        image = cv2.GaussianBlur(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (9, 9), 3)
        cv2.putText(image, str(i), (20, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), image)
    return tmp_path


def ros_args(*params: str) -> dict:
    args = ["--ros-args", *CAMERA_REMAPS]
    for param in params:
        args += ["-p", param]
    return {"cli_args": args, "use_global_arguments": False}


def test_camera_graph_delivers_every_frame_with_headers_and_info(ros, image_folder):
    probe = ros.probe()
    images, infos, diagnostics = [], [], []
    probe.create_subscription(Image, "camera/image", images.append, RELIABLE)
    probe.create_subscription(CameraInfo, "camera/camera_info", infos.append, RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, RELIABLE)
    converter = ros.add(ImageConverter(**ros_args("transport:=compressed")))
    camera = ros.add(CameraSource(**ros_args(
        f"source:={image_folder}", "loop:=false", "rate_hz:=0.0", "pace_topic:=camera/image",
        "pace_type:=sensor_msgs/msg/Image", "transport:=compressed", "frame_id:=cam0", "hfov_deg:=90.0",
    )))
    assert ros.spin_until(lambda: len(images) == 6 and camera.finished.is_set())
    # Lock-step: each frame waited for its converted image, so nothing was dropped anywhere.
    assert converter.counters.as_dict() == {"received": 6, "processed": 6, "dropped": 0}
    assert camera.counters.dropped_total == 0
    stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images]
    assert stamps == sorted(stamps) and len(set(stamps)) == 6
    assert all(m.header.frame_id == "cam0" and m.encoding == "bgr8" for m in images)
    assert {(i.header.stamp.sec, i.header.stamp.nanosec) for i in infos} >= set(stamps)
    info = infos[0]
    assert (info.width, info.height) == (80, 60)
    np.testing.assert_allclose(np.reshape(info.k, (3, 3)), [[40, 0, 40], [0, 40, 30], [0, 0, 1]])
    for i, msg in enumerate(images):  # JPEG q90 of the source frames, in order
        source = cv2.imread(str(image_folder / f"{i:02d}.png"))
        received = np.frombuffer(msg.data, np.uint8).reshape(60, 80, 3)
        assert np.abs(received.astype(int) - source).mean() < 4
    assert ros.spin_until(lambda: any(s.name.endswith("image_converter: image converter")
                                      and dict((kv.key, kv.value) for kv in s.values).get("processed") == "6"
                                      for d in diagnostics for s in d.status))
    status = next(s for d in reversed(diagnostics) for s in d.status if "image_converter" in s.name)
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == b"\x00"
    for key in ("input_rate_hz", "received", "processed", "dropped", "latency_p95_ms", "latency_max_ms"):
        assert key in values, key


def bad_images() -> list[tuple[str, Image]]:
    good = dict(height=4, width=5, encoding="bgr8", is_bigendian=0, step=15, data=bytes(60))
    return [
        ("step", Image(**{**good, "step": 14})),
        ("size", Image(**{**good, "data": bytes(59)})),
        ("encoding", Image(**{**good, "encoding": "bgr9000"})),
        ("zero", Image(**{**good, "height": 0, "data": b""})),
    ]


def test_malformed_images_are_counted_and_the_node_keeps_running(ros):
    probe = ros.probe()
    converted, diagnostics = [], []
    probe.create_subscription(Image, "camera/image", converted.append, RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, RELIABLE)
    raw_pub = probe.create_publisher(Image, "camera/image_raw", RELIABLE)
    jpeg_pub = probe.create_publisher(CompressedImage, "camera/image_raw/compressed", RELIABLE)
    raw = ros.add(ImageConverter(**ros_args("transport:=raw")))
    compressed = ros.add(ImageConverter(**ros_args("transport:=compressed", "diagnostics_period_s:=0.2")))
    assert ros.spin_until(lambda: raw_pub.get_subscription_count() and jpeg_pub.get_subscription_count())

    def send(pub, msg, node):
        before = node.counters.received
        pub.publish(msg)
        assert ros.spin_until(lambda: node.counters.processed + node.counters.dropped_total > before)

    for _, msg in bad_images():
        send(raw_pub, msg, raw)
    ok, jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 200, np.uint8))
    send(jpeg_pub, CompressedImage(format="jpeg", data=jpeg.tobytes()[: len(jpeg) // 2]), compressed)
    send(jpeg_pub, CompressedImage(format="jpeg", data=b"definitely not a jpeg"), compressed)
    assert raw.counters.as_dict() == {"received": 4, "processed": 0, "dropped": 4, "dropped_malformed": 4}
    assert compressed.counters.as_dict()["dropped_malformed"] == 2
    # Still alive: a good frame goes through both.
    good = Image(height=4, width=5, encoding="rgb8", is_bigendian=0, step=15, data=bytes(range(60)))
    good.header.frame_id = "after"
    send(raw_pub, good, raw)
    send(jpeg_pub, CompressedImage(format="jpeg", data=jpeg.tobytes()), compressed)
    assert ros.spin_until(lambda: len(converted) == 2)
    assert raw.counters.processed == 1 and compressed.counters.processed == 1
    assert {m.header.frame_id for m in converted} == {"after", ""}
    np.testing.assert_array_equal(  # rgb8 in, bgr8 out
        np.frombuffer(next(m for m in converted if m.header.frame_id).data, np.uint8).reshape(4, 5, 3),
        np.arange(60, dtype=np.uint8).reshape(4, 5, 3)[..., ::-1],
    )
    assert ros.spin_until(lambda: any(
        s.level == b"\x01" and {kv.key: kv.value for kv in s.values}.get("dropped_malformed") == "2"
        for d in diagnostics for s in d.status
    )), "diagnostics must report the malformed frames as a warning"


def test_stale_frames_are_dropped_and_counted_not_queued(ros):
    probe = ros.probe()
    pub = probe.create_publisher(CompressedImage, "camera/image_raw/compressed", RELIABLE)
    converter = ros.add(ImageConverter(**ros_args("transport:=compressed")))
    # A large PNG takes the converter far longer to decode than the 5 ms between frames.
    noise = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    frame = CompressedImage(format="png", data=cv2.imencode(".png", noise)[1].tobytes())
    assert ros.spin_until(lambda: pub.get_subscription_count() > 0)

    def publish_fast():
        for _ in range(40):
            pub.publish(frame)
            time.sleep(0.005)

    sender = threading.Thread(target=publish_fast)
    sender.start()
    assert ros.spin_until(lambda: not sender.is_alive() and converter.counters.processed
                          + converter.counters.dropped_total == converter.counters.received, timeout=30)
    counts = converter.counters.as_dict()
    assert counts["dropped_stale"] > 0 and counts["processed"] < 20
    # Every frame is accounted for, and most were replaced by newer ones instead of waiting in a queue.
    assert counts["received"] == counts["processed"] + counts["dropped_stale"]


def test_camera_source_follows_sim_time(ros, image_folder):
    probe = ros.probe()
    clock_pub = probe.create_publisher(Clock, "/clock", 10)
    images = []
    probe.create_subscription(CompressedImage, "camera/image_raw/compressed", images.append, RELIABLE)
    camera = ros.add(CameraSource(**ros_args(f"source:={image_folder}", "use_sim_time:=true", "rate_hz:=50.0",
                                             "max_frames:=3")))
    ros.spin_until(lambda: camera.count_subscribers("/clock") > 0)
    deadline = time.monotonic() + 10
    while len(images) < 3 and time.monotonic() < deadline:
        clock_pub.publish(Clock(clock=Time(sec=42, nanosec=5)))
        ros.spin_until(lambda: False, timeout=0.02)
    assert len(images) == 3
    assert all((m.header.stamp.sec, m.header.stamp.nanosec) == (42, 5) for m in images)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_node_executable_shuts_down_cleanly_on_signal(image_folder, sig):
    executable = Path(sys.prefix) / "lib" / "refine_perception" / "camera_source"
    proc = subprocess.Popen(
        [str(executable), "--ros-args", "-p", f"source:={image_folder}", "-p", "wait_for_subscribers:=false"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 20
        while "publishing" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "publishing" in line, "the node did not start"
        proc.send_signal(sig)
        rest = proc.communicate(timeout=15)[1]
    finally:
        proc.kill()
    assert proc.returncode == 0, rest
    assert "shutting down" in rest
    assert "Traceback" not in rest
