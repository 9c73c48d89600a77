"""The lane_detector node over real DDS: LaneArray per image with its header, CameraInfo matched by stamp,
markers, malformed frames counted and skipped (damaged JPEGs and PNG bombs included), a missing model
reported without dying, any camera resolution, stamps jumping back, a silent or bad CameraInfo, tracking
parameters changed at run time, and, with the shipped model on a synthetic drive, ground points from the
camera it was given and lane ids that stay put."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from bad_images import corrupt_jpegs, png_bomb
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import Marker, MarkerArray

from refine_msgs.msg import LaneArray
from refine_perception.core.camera import PinholeCamera
from refine_perception.data.synthetic.road import RoadSample, drive, road_sample
from refine_perception.lanes.ground import project_lanes
from refine_perception.lanes.pipeline import default_model_path
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.clrnet.weights import save_lane_model
from refine_perception.ros.image_messages import numpy_to_compressed, numpy_to_image
from refine_perception.ros.lane_detector import LaneDetector

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    model = CLRNet("resnet18", 5, (64, 160), num_priors=32, sample_points=8).eval()
    with torch.no_grad():  # untrained, but confident priors half an image long: lanes to publish
        model.head.cls_layers.bias.copy_(torch.tensor([-2.0, 2.0]))
        model.head.reg_layers.bias[3] = 0.5
    save_lane_model(path, model, "resnet18", {"cut_height": 270, "ori_width": 1640, "ori_height": 590})
    return path


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def start_detector(ros, model: Path | str, *params: str) -> LaneDetector:
    args = ["--ros-args", "-p", f"model:={model}", "-p", "backend:=onnxruntime", *sum((["-p", p] for p in params), [])]
    return ros.add(LaneDetector(cli_args=args, use_global_arguments=False))


def camera_params(camera: PinholeCamera) -> list[str]:
    return [f"camera_height_m:={camera.mount_height}", f"camera_pitch_rad:={camera.pitch}",
            f"camera_roll_rad:={camera.roll}", f"camera_yaw_rad:={camera.yaw}"]


class Feed:
    """A test node publishing images + CameraInfo and collecting the detector's outputs."""

    def __init__(self, ros) -> None:
        self.node = ros.probe("feed")
        self.images = self.node.create_publisher(Image, "image_raw", RELIABLE)
        self.infos = self.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.lanes: list[LaneArray] = []
        self.markers: list[MarkerArray] = []
        self.node.create_subscription(LaneArray, "lanes", self.lanes.append, RELIABLE)
        self.node.create_subscription(MarkerArray, "lane_markers", self.markers.append, RELIABLE)
        self.ros = ros

    def connected(self) -> bool:
        return self.images.get_subscription_count() > 0 and self.infos.get_subscription_count() > 0

    def send(self, sample: RoadSample, sec: int, info_offset_ns: int = 0, image: Image | None = None,
             info_sec: int | None = None) -> Image:
        msg = image or numpy_to_image(sample.image, "bgr8")
        msg.header.stamp = Time(sec=sec, nanosec=0)
        msg.header.frame_id = "camera_optical_frame"
        info = CameraInfo()
        camera = sample.camera.camera_info()
        info.header.stamp = Time(sec=sec if info_sec is None else info_sec, nanosec=info_offset_ns)
        info.header.frame_id = "camera_optical_frame"
        info.width, info.height = camera["width"], camera["height"]
        info.distortion_model = "plumb_bob"
        info.k, info.d = [float(v) for v in camera["K"]], [float(v) for v in camera["D"]]
        self.images.publish(msg)
        self.infos.publish(info)
        return msg


def test_lane_array_per_image_with_header_markers_and_ground_frame(ros, tiny_model: Path) -> None:
    start_detector(ros, tiny_model)
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    sample = road_sample(3, 0)
    sent = feed.send(sample, sec=10)
    assert ros.spin_until(lambda: feed.lanes and feed.markers, timeout=60)
    lanes = feed.lanes[0]
    assert lanes.header == sent.header
    assert (lanes.image_width, lanes.image_height) == (1640, 590)
    assert lanes.ground_frame_id == "base_footprint"
    assert lanes.lanes
    markers = feed.markers[0].markers
    assert markers[0].action == Marker.DELETEALL
    keys = [(m.ns, m.id) for m in markers[1:]]
    assert len(keys) == len(set(keys))
    assert all(m.header.frame_id == "base_footprint" for m in markers[1:] if m.type == Marker.LINE_STRIP)


def test_camera_info_is_matched_by_stamp(ros, tiny_model: Path) -> None:
    detector = start_detector(ros, tiny_model, "sync_slop_s:=0.01")
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    sample = road_sample(3, 1)
    feed.send(sample, sec=20, info_offset_ns=200_000_000)  # 0.2 s apart: no pair
    ros.spin_until(lambda: False, timeout=1.0)  # delivered before the next pair (input depth is 1)
    feed.send(sample, sec=21, info_offset_ns=5_000_000)  # 5 ms apart: a pair
    assert ros.spin_until(lambda: feed.lanes, timeout=60)
    ros.spin_until(lambda: False, timeout=1.0)
    assert [msg.header.stamp.sec for msg in feed.lanes] == [21]
    assert detector.unmatched() >= 1


def test_without_camera_info_lanes_stay_in_the_image(ros, tiny_model: Path) -> None:
    start_detector(ros, tiny_model, "use_camera_info:=false")
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    feed.send(road_sample(3, 2), sec=30)
    assert ros.spin_until(lambda: feed.lanes and feed.markers, timeout=60)
    assert feed.lanes[0].ground_frame_id == ""
    assert all(not lane.ground_points for lane in feed.lanes[0].lanes)
    strips = [m for m in feed.markers[0].markers if m.type == Marker.LINE_STRIP]
    assert strips and all(m.header.frame_id == "lane_image" for m in strips)


def test_malformed_frames_are_counted_and_skipped(ros, tiny_model: Path) -> None:
    detector = start_detector(ros, tiny_model, "use_camera_info:=false")
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    sample = road_sample(3, 3)
    broken = numpy_to_image(sample.image, "bgr8")
    broken.data = broken.data[:1000]  # far shorter than step x height
    feed.send(sample, sec=40, image=broken)
    assert ros.spin_until(lambda: detector.counters.as_dict().get("dropped_malformed", 0) == 1, timeout=30)
    feed.send(sample, sec=41)
    assert ros.spin_until(lambda: feed.lanes, timeout=60)
    assert feed.lanes[0].header.stamp.sec == 41


@pytest.mark.parametrize("problem", ["missing", "corrupt"])
def test_a_bad_model_file_is_reported_and_the_node_keeps_running(ros, tiny_model: Path, tmp_path: Path,
                                                                 problem: str) -> None:
    path = tmp_path / "model.safetensors"
    if problem == "corrupt":
        data = bytearray(tiny_model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        (tmp_path / "model.json").write_text(tiny_model.with_suffix(".json").read_text())
    detector = start_detector(ros, path, "use_camera_info:=false")
    level, message, values = detector.status_summary()
    assert level == 2 and str(path) in message
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    feed.send(road_sample(3, 4), sec=50)
    assert ros.spin_until(lambda: detector.counters.as_dict().get("dropped_no_model", 0) == 1, timeout=30)
    assert not feed.lanes
    assert detector.counters.as_dict()["processed"] == 0  # a dropped frame is not also processed


def _x_at(points: np.ndarray, x: float) -> float | None:
    order = np.argsort(points[:, 0])
    xs, ys = points[order, 0], points[order, 1]
    return float(np.interp(x, xs, ys)) if xs[0] <= x <= xs[-1] else None


@pytest.mark.slow
def test_shipped_model_on_a_drive_ground_points_and_stable_ids(ros) -> None:
    """The node's ground points are its image points through the camera it was given (CameraInfo +
    mounting parameters), that camera puts the generator's exact lanes within 0.1 m of their true ground
    points at 20 m, and each true lane keeps one track id over the drive."""
    frames = list(drive(seed=6, n_frames=12, fps=10.0))  # a flat road: the plane model is exact there
    camera = frames[0].camera
    start_detector(ros, default_model_path(), *camera_params(camera))
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    truth_errors: list[float] = []
    identity: dict[int, set[int]] = {}
    for k, frame in enumerate(frames):
        feed.send(frame, sec=100 + k)
        assert ros.spin_until(lambda: len(feed.lanes) == k + 1, timeout=60)
        result = feed.lanes[-1]
        assert result.lanes, f"no lanes in frame {k}"
        for lane in result.lanes:
            image = np.array([[p.x, p.y] for p in lane.image_points])
            ground = np.array([[p.x, p.y, p.z] for p in lane.ground_points])
            expected = project_lanes(camera, [image])[0]
            np.testing.assert_allclose(ground, expected, atol=1e-3)
            truth = min(frame.lanes, key=lambda t: np.abs(t.image_points[0] - image[0]).sum())
            identity.setdefault(truth.id, set()).add(lane.track_id)
        for truth in frame.lanes:
            projected = project_lanes(camera, [truth.image_points])[0]
            at_20, true_at_20 = _x_at(projected[:, :2], 20.0), _x_at(truth.ground_points[:, :2], 20.0)
            if at_20 is not None and true_at_20 is not None:
                truth_errors.append(abs(at_20 - true_at_20))
    assert truth_errors and max(truth_errors) < 0.1, f"projection error at 20 m up to {max(truth_errors):.3f} m"
    assert all(len(ids) == 1 for ids in identity.values()), f"id switches: {identity}"


@pytest.mark.parametrize("size", [(2048, 1536), (2448, 2048), (4000, 3000), (641, 479), (1280, 720)])
def test_any_camera_resolution_gives_lanes_inside_the_image(ros, tiny_model: Path, size: tuple[int, int]) -> None:
    """Images taller than ~1290 px used to fail every frame (the crop was checked against CULane's 590 rows)."""
    detector = start_detector(ros, tiny_model, "use_camera_info:=false", "transport:=compressed")
    node = ros.probe("feed")
    images = node.create_publisher(CompressedImage, "image_raw/compressed", RELIABLE)
    got: list[LaneArray] = []
    node.create_subscription(LaneArray, "lanes", got.append, RELIABLE)
    assert ros.spin_until(lambda: images.get_subscription_count() > 0)
    width, height = size
    image = cv2.resize(road_sample(3, 5).image, (width, height), interpolation=cv2.INTER_AREA)
    msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", image)[1].tobytes())
    msg.header.stamp = Time(sec=60)
    images.publish(msg)
    assert ros.spin_until(lambda: got, timeout=60), detector.counters.as_dict()
    lanes = got[0]
    assert (lanes.image_width, lanes.image_height) == (width, height)
    assert lanes.lanes
    points = np.array([[p.x, p.y] for lane in lanes.lanes for p in lane.image_points])
    # rows below the model's crop (270 of 590) down to the bottom edge; x may pass the right edge above a
    # lane's start, as in the official decoding
    assert np.isfinite(points).all() and (points[:, 0] >= 0).all()
    assert (points[:, 1] >= 270 / 590 * height - 1).all() and (points[:, 1] <= height).all()
    assert detector.counters.as_dict()["dropped"] == 0


def test_a_jump_back_in_time_restarts_matching_and_tracking(ros, tiny_model: Path) -> None:
    """A bag on loop: after stamps 5001/5002 the frames stamped 11-14 used to be discarded without a word."""
    detector = start_detector(ros, tiny_model)
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    sample = road_sample(3, 6)
    for k, sec in enumerate([5001, 5002, 11, 12, 13, 14]):
        feed.send(sample, sec=sec)
        assert ros.spin_until(lambda: len(feed.lanes) == k + 1, timeout=60), (sec, detector.counters.as_dict())
    assert [msg.header.stamp.sec for msg in feed.lanes] == [5001, 5002, 11, 12, 13, 14]
    assert all(msg.ground_frame_id == "base_footprint" for msg in feed.lanes)  # still matched with CameraInfo
    assert detector.stamped_inputs.time_jumps == 1
    assert detector.status_summary()[2]["time_jumps"] == "1"
    before = {lane.track_id for msg in feed.lanes[:2] for lane in msg.lanes}
    after = {lane.track_id for msg in feed.lanes[2:] for lane in msg.lanes}
    assert before and after and not before & after  # the tracks started afresh; ids are never reused
    assert {lane.track_id for lane in feed.lanes[2].lanes} == {lane.track_id for lane in feed.lanes[5].lanes}


def test_images_without_camera_info_go_on_after_the_timeout_with_a_warning(ros, tiny_model: Path) -> None:
    detector = start_detector(ros, tiny_model, "optional_input_timeout_s:=0.5")
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    sample = road_sample(3, 7)
    for sec in range(70, 76):  # images only, 0.25 s apart
        msg = numpy_to_image(sample.image, "bgr8")
        msg.header.stamp = Time(sec=sec)
        feed.images.publish(msg)
        ros.spin_until(lambda: False, timeout=0.25)
    assert ros.spin_until(lambda: feed.lanes, timeout=60), detector.counters.as_dict()
    assert all(msg.ground_frame_id == "" for msg in feed.lanes)
    level, message, values = detector.status_summary()
    assert level == 1 and "camera_info" in message and "ground points" in message
    assert values["missing_inputs"] == "camera_info"
    # the CameraInfo comes back: ground points again, status no longer mentions it
    count = len(feed.lanes)
    feed.send(sample, sec=80)
    ros.spin_until(lambda: False, timeout=0.3)
    feed.send(sample, sec=81)
    assert ros.spin_until(lambda: any(m.header.stamp.sec == 81 for m in feed.lanes[count:]), timeout=60)
    assert feed.lanes[-1].ground_frame_id == "base_footprint"
    assert "missing_inputs" not in detector.status_summary()[2]


@pytest.mark.parametrize("damage", ["zero_k", "nan_k", "other_size", "negative_focal"])
def test_a_bad_camera_info_costs_the_ground_points_not_the_lanes(ros, tiny_model: Path, damage: str) -> None:
    detector = start_detector(ros, tiny_model)
    node = ros.probe("feed")
    images = node.create_publisher(Image, "image_raw", RELIABLE)
    infos = node.create_publisher(CameraInfo, "camera_info", RELIABLE)
    got: list[LaneArray] = []
    node.create_subscription(LaneArray, "lanes", got.append, RELIABLE)
    assert ros.spin_until(lambda: images.get_subscription_count() > 0 and infos.get_subscription_count() > 0)
    sample = road_sample(3, 8)
    image = numpy_to_image(sample.image, "bgr8")
    image.header.stamp = Time(sec=90)
    camera = sample.camera.camera_info()
    k = np.array(camera["K"], dtype=float)
    width, height = camera["width"], camera["height"]
    if damage == "zero_k":
        k[:] = 0.0
    elif damage == "nan_k":
        k[0] = np.nan
    elif damage == "other_size":
        width, height = 640, 480
    else:
        k[0] = -k[0]
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", k=[float(v) for v in k],
                      d=[0.0] * 5)
    info.header.stamp = image.header.stamp
    infos.publish(info)
    images.publish(image)
    assert ros.spin_until(lambda: got, timeout=60), detector.counters.as_dict()
    assert got[0].lanes and got[0].ground_frame_id == ""
    assert all(not lane.ground_points for lane in got[0].lanes)
    # the worker counts a frame once its handler has returned, just after the publish that woke us
    assert ros.spin_until(lambda: detector.counters.as_dict().get("processed") == 1, timeout=10)
    counts = detector.counters.as_dict()
    assert counts["processed"] == 1 and counts["dropped_malformed"] == 1 and "dropped_error" not in counts


def test_tracking_parameters_apply_at_run_time(ros, tiny_model: Path) -> None:
    detector = start_detector(ros, tiny_model, "use_camera_info:=false")
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    result = detector.set_parameters([Parameter("max_missed", value=9), Parameter("smoothing", value=0.3)])
    assert all(r.successful for r in result)
    feed.send(road_sample(3, 9), sec=95)
    assert ros.spin_until(lambda: feed.lanes, timeout=60)
    assert detector.pipeline is not None
    assert (detector.pipeline.tracker.max_missed, detector.pipeline.tracker.smoothing) == (9, 0.3)


def test_corrupt_jpeg_and_png_bomb_are_malformed_and_the_next_frame_is_processed(ros, tiny_model: Path) -> None:
    detector = start_detector(ros, tiny_model, "transport:=compressed", "use_camera_info:=false",
                              "diagnostics_period_s:=0.2")
    probe = ros.probe("hostile_camera")
    images = probe.create_publisher(CompressedImage, "image_raw/compressed", RELIABLE)
    lanes: list[LaneArray] = []
    diagnostics: list[DiagnosticArray] = []
    probe.create_subscription(LaneArray, "lanes", lanes.append, RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, RELIABLE)
    assert ros.spin_until(lambda: images.get_subscription_count() > 0)

    good = numpy_to_compressed(road_sample(3, 5).image, "jpeg")  # a 1640x590 camera frame
    damaged = corrupt_jpegs(road_sample(3, 5).image)["cut at 60 % with EOI appended"]
    frames = [("bgr8; jpeg compressed bgr8", damaged, 1), ("png", png_bomb(20000, 20000), 2)]
    for sec, (fmt, data, malformed) in enumerate(frames, start=60):
        msg = CompressedImage(format=fmt, data=data)
        msg.header.stamp = Time(sec=sec)
        images.publish(msg)
        assert ros.spin_until(lambda: detector.counters.as_dict().get("dropped_malformed", 0) == malformed,
                              timeout=30), f"frame {sec} ({fmt}) was not counted as malformed"

    def reported(key: str, value: str) -> bool:
        return any({kv.key: kv.value for kv in s.values}.get(key) == value
                   for d in diagnostics for s in d.status if "lane_detector" in s.name)

    assert ros.spin_until(lambda: reported("dropped_malformed", "2"), timeout=10)
    assert detector.counters.as_dict().get("dropped_error", 0) == 0 and not lanes

    good.header.stamp = Time(sec=70)
    images.publish(good)
    assert ros.spin_until(lambda: lanes, timeout=60)
    assert [msg.header.stamp.sec for msg in lanes] == [70]
    assert ros.spin_until(lambda: reported("processed", "1"), timeout=10)


def test_a_camera_info_on_another_clock_is_left_out_after_the_timeout(ros, tiny_model: Path) -> None:
    """A CameraInfo publisher stamping with another clock never fits an image: the images must not wait for
    it forever (it publishes, so it is not silent)."""
    detector = start_detector(ros, tiny_model, "optional_input_timeout_s:=0.5")
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    sample = road_sample(3, 10)
    for sec in range(110, 116):
        feed.send(sample, sec=sec, info_sec=sec - 100)  # 100 s behind, on every frame
        ros.spin_until(lambda: False, timeout=0.25)
    assert ros.spin_until(lambda: feed.lanes, timeout=60), detector.counters.as_dict()
    assert all(msg.ground_frame_id == "" for msg in feed.lanes)
    level, message, values = detector.status_summary()
    assert level == 1 and values["missing_inputs"] == "camera_info"
    # once its stamps fit the images again it is matched again
    feed.send(sample, sec=120)
    ros.spin_until(lambda: False, timeout=0.3)
    feed.send(sample, sec=121)
    assert ros.spin_until(lambda: any(m.header.stamp.sec == 121 for m in feed.lanes), timeout=60)
    assert feed.lanes[-1].ground_frame_id == "base_footprint"
    assert "missing_inputs" not in detector.status_summary()[2]
