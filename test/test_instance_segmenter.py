"""The instance_segmenter node over real DDS: an InstanceArray per image under its header, image + CameraInfo
+ depth matched by stamp into grasps on the camera frame, exactly what the offline pipeline computes from
the same messages; a missing model is reported without dying. The model is an untrained test file whose
output still has instances (horizontal bands, see instance_checks)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseArray
from instance_checks import write_banded_model
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from refine_msgs.msg import InstanceArray
from refine_perception.data.synthetic.sticks import SticksScene, render_sticks
from refine_perception.instances.pipeline import InstancePipeline, InstanceSettings, open_instance_predictor
from refine_perception.ros.image_messages import numpy_to_image
from refine_perception.ros.instance_messages import instance_results, instances_from_messages
from refine_perception.ros.instance_segmenter import InstanceSegmenter

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_banded_model(tmp_path_factory.mktemp("model") / "banded.safetensors")


def messages(scene: SticksScene, sec: int) -> tuple[Image, CameraInfo, Image]:
    stamp = Time(sec=sec, nanosec=0)
    image = numpy_to_image(scene.image, "bgr8")
    depth = numpy_to_image(scene.depth_millimetres(), "16UC1")
    info = CameraInfo(width=scene.image.shape[1], height=scene.image.shape[0], distortion_model="plumb_bob",
                      k=[float(v) for v in scene.camera.K.ravel()], d=[0.0] * 5)
    for msg in (image, depth, info):
        msg.header.stamp = stamp
        msg.header.frame_id = "camera_optical_frame"
    return image, info, depth


class Feed:
    def __init__(self, ros) -> None:
        self.node = ros.probe("feed")
        self.images = self.node.create_publisher(Image, "image_raw", RELIABLE)
        self.infos = self.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.depths = self.node.create_publisher(Image, "depth/image_raw", RELIABLE)
        self.arrays: list[InstanceArray] = []
        self.markers: list[MarkerArray] = []
        self.grasps: list[PoseArray] = []
        self.node.create_subscription(InstanceArray, "instances", self.arrays.append, RELIABLE)
        self.node.create_subscription(PoseArray, "grasps", self.grasps.append, RELIABLE)
        self.node.create_subscription(MarkerArray, "instance_markers", self.markers.append, RELIABLE)

    def connected(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in (self.images, self.infos, self.depths))

    def send(self, image: Image, info: CameraInfo, depth: Image) -> None:
        self.depths.publish(depth)
        self.infos.publish(info)
        self.images.publish(image)


def start(ros, model: Path, *params: str) -> InstanceSegmenter:
    args = ["--ros-args", "-p", "threads:=1", "-p", f"model:={model}", *sum((["-p", p] for p in params), [])]
    return ros.add(InstanceSegmenter(cli_args=args, use_global_arguments=False))


def test_instances_with_grasps_match_the_offline_pipeline(ros, model: Path) -> None:
    segmenter = start(ros, model)
    assert not segmenter.model_error
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    scene = render_sticks(np.random.SeedSequence([2, 1]), 320, 240)
    image, info, depth = messages(scene, sec=7)
    feed.send(image, info, depth)
    assert ros.spin_until(lambda: feed.arrays and feed.markers and feed.grasps, timeout=60)
    array = feed.arrays[0]
    assert array.header.stamp.sec == 7 and array.header.frame_id == "camera_optical_frame"
    assert (array.image_height, array.image_width) == (240, 320)
    published = instance_results(array)
    predictor, _ = open_instance_predictor(str(model), threads=1)
    expected = instance_results(instances_from_messages(InstancePipeline(predictor, InstanceSettings()), image, info, depth)[0])
    assert len(published) == len(expected) > 0
    for got, want in zip(published, expected):
        assert np.array_equal(got.mask, want.mask) and got.score == pytest.approx(want.score)
        assert (got.grasp is None) == (want.grasp is None)
        if got.grasp is not None:
            np.testing.assert_allclose(got.grasp.position, want.grasp.position, atol=1e-6)
    # the grasps are in metres in front of the camera, near the depth image's distances (table at 0.55-0.8 m;
    # a band is taken for a stick as wide as the band, whose axis lies half that width below its top)
    grasps = [r.grasp for r in published if r.grasp is not None]
    assert grasps and all(0.5 < g.position[2] < 1.2 for g in grasps)
    assert len(feed.markers[0].markers) == 1 + 3 * len(grasps)  # DELETEALL, then arrow, jaws, label each
    # the same grasps as a PoseArray in the image's frame, best first
    poses = feed.grasps[0]
    assert poses.header == array.header
    graspable = sorted((i for i in array.instances if i.has_grasp), key=lambda i: -i.grasp_score)
    assert [p.position.x for p in poses.poses] == [i.grasp_pose.position.x for i in graspable]
    assert [p.orientation.w for p in poses.poses] == [i.grasp_pose.orientation.w for i in graspable]
    assert len(poses.poses) == len(grasps)


def test_without_camera_info_there_are_no_grasps(ros, model: Path) -> None:
    start(ros, model, "use_camera_info:=false")
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    image, _, _ = messages(render_sticks(np.random.SeedSequence([2, 2]), 320, 240), sec=9)
    feed.images.publish(image)
    assert ros.spin_until(lambda: feed.arrays, timeout=60)
    assert feed.arrays[0].instances and not any(i.has_grasp for i in feed.arrays[0].instances)


def test_a_missing_model_is_reported_and_the_node_keeps_running(ros, tmp_path: Path) -> None:
    segmenter = start(ros, tmp_path / "none.safetensors", "use_camera_info:=false")
    level, message, _ = segmenter.status_summary()
    assert level == 2 and "none.safetensors" in message
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    image, _, _ = messages(render_sticks(np.random.SeedSequence([2, 3]), 160, 120), sec=11)
    feed.images.publish(image)
    assert ros.spin_until(lambda: segmenter.counters.as_dict().get("dropped_no_model", 0) == 1, timeout=30)
    assert not feed.arrays
    assert segmenter.counters.as_dict()["processed"] == 0  # a dropped frame is not also processed


def assert_grasps_without_depth(array: InstanceArray, model: Path, image: Image, info: CameraInfo,
                                table_distance_m: float) -> None:
    """`array` holds grasps, exactly those the offline pipeline gives the image and CameraInfo alone."""
    predictor, _ = open_instance_predictor(str(model), threads=1)
    settings = InstanceSettings(table_distance_m=table_distance_m)
    expected = instance_results(instances_from_messages(InstancePipeline(predictor, settings), image, info)[0])
    published = instance_results(array)
    assert any(r.grasp is not None for r in published)
    assert [r.grasp is None for r in published] == [r.grasp is None for r in expected]
    for got, want in zip(published, expected):
        if got.grasp is not None:
            np.testing.assert_allclose(got.grasp.position, want.grasp.position, atol=1e-6)


def test_without_depth_the_grasps_come_after_the_timeout_at_table_distance(ros, model: Path) -> None:
    """Image + CameraInfo and no depth publisher: the node used to wait for depth forever, status OK."""
    segmenter = start(ros, model, "optional_input_timeout_s:=0.5", "table_distance_m:=0.9")
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    scene = render_sticks(np.random.SeedSequence([2, 4]), 320, 240)
    for sec in range(20, 26):
        image, info, _ = messages(scene, sec=sec)
        feed.infos.publish(info)
        feed.images.publish(image)
        ros.spin_until(lambda: False, timeout=0.25)
    assert ros.spin_until(lambda: feed.arrays, timeout=60), segmenter.counters.as_dict()
    assert_grasps_without_depth(feed.arrays[-1], model, image, info, table_distance_m=0.9)
    level, message, values = segmenter.status_summary()
    assert level == 1 and "depth/image_raw" in message and values["missing_inputs"] == "depth/image_raw"


@pytest.mark.parametrize("damage", ["depth_size", "depth_encoding", "zero_k"])
def test_a_bad_depth_or_camera_info_costs_only_what_needs_it(ros, model: Path, damage: str) -> None:
    segmenter = start(ros, model)
    feed = Feed(ros)
    assert ros.spin_until(feed.connected)
    scene = render_sticks(np.random.SeedSequence([2, 5]), 320, 240)
    image, info, depth = messages(scene, sec=30)
    if damage == "depth_size":
        depth = numpy_to_image(np.full((120, 160), 700, np.uint16), "16UC1")
    elif damage == "depth_encoding":
        depth = numpy_to_image(np.zeros((240, 320, 3), np.uint8), "rgb8")
    else:
        info.k = [0.0] * 9
    depth.header = image.header
    feed.send(image, info, depth)
    assert ros.spin_until(lambda: feed.arrays, timeout=60), segmenter.counters.as_dict()
    instances = feed.arrays[0].instances
    assert instances
    if damage == "zero_k":
        assert not any(i.has_grasp for i in instances)
    else:  # grasps with the sticks on the table, as without depth
        assert_grasps_without_depth(feed.arrays[0], model, image, info, table_distance_m=0.7)
    # the worker counts a frame once its handler has returned, just after the publish that woke us
    assert ros.spin_until(lambda: segmenter.counters.as_dict().get("processed") == 1, timeout=10)
    counts = segmenter.counters.as_dict()
    assert counts["processed"] == 1 and counts["dropped_malformed"] == 1 and "dropped_error" not in counts


def test_threads_stay_with_the_node(ros, model: Path) -> None:
    """threads:=1 used to call torch.set_num_threads for the whole process (every node of the one-process
    launcher); now it holds around the node's own network calls only."""
    before = 2  # what the process's other nodes use here
    previous = torch.get_num_threads()
    torch.set_num_threads(before)
    try:
        check_threads_stay_with_the_node(ros, model, before)
    finally:
        torch.set_num_threads(previous)


def check_threads_stay_with_the_node(ros, model: Path, before: int) -> None:
    seen: list[int] = []
    segmenter = start(ros, model, "use_camera_info:=false")  # start() passes threads:=1
    assert segmenter.pipeline is not None
    network = segmenter.pipeline.predictor.network
    segmenter.pipeline.predictor.network = lambda batch: (seen.append(torch.get_num_threads()), network(batch))[1]
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    image, _, _ = messages(render_sticks(np.random.SeedSequence([2, 6]), 160, 120), sec=40)
    feed.images.publish(image)
    assert ros.spin_until(lambda: feed.arrays, timeout=60)
    assert seen == [1]
    assert torch.get_num_threads() == before
    later: list[int] = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [before]  # threads started afterwards (other nodes' workers) keep the default too
