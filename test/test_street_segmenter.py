"""The street_segmenter node over real DDS: a mono8 label image and an InstanceArray per camera image under
its header, equal to what the offline pipeline makes of the same message; the ClassMap reaches a subscriber
that joins late (latched); ids stay with their objects from frame to frame; outline markers only with a
CameraInfo; a missing model or a malformed image is reported and counted, and the node keeps running."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from street_checks import write_car_model
from visualization_msgs.msg import Marker, MarkerArray

from refine_msgs.msg import ClassMap, InstanceArray
from refine_perception.data.synthetic.street import render_street
from refine_perception.ros.image_messages import image_to_numpy, numpy_to_image
from refine_perception.ros.instance_messages import instance_results
from refine_perception.ros.street_messages import street_from_messages
from refine_perception.ros.street_segmenter import StreetSegmenter
from refine_perception.segmentation.classes import STREET_CLASSES
from refine_perception.segmentation.pipeline import StreetPipeline, StreetSettings, open_street_predictor

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
WIDTH, HEIGHT = 256, 128


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_car_model(tmp_path_factory.mktemp("model") / "cars.safetensors")


def camera_messages(index: int, sec: int) -> tuple[Image, CameraInfo]:
    scene = render_street(np.random.SeedSequence([2, index]), WIDTH, HEIGHT)
    image = numpy_to_image(scene.image, "bgr8")
    info = CameraInfo(width=WIDTH, height=HEIGHT, distortion_model="plumb_bob",
                      k=[float(v) for v in scene.camera.K.ravel()], d=[0.0] * 5)
    for msg in (image, info):
        msg.header.stamp = Time(sec=sec, nanosec=0)
        msg.header.frame_id = "camera_optical_frame"
    return image, info


class Feed:
    def __init__(self, ros) -> None:
        self.node = ros.probe("feed")
        self.images = self.node.create_publisher(Image, "image_raw", RELIABLE)
        self.infos = self.node.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.labels: list[Image] = []
        self.arrays: list[InstanceArray] = []
        self.markers: list[MarkerArray] = []
        self.node.create_subscription(Image, "labels", self.labels.append, RELIABLE)
        self.node.create_subscription(InstanceArray, "instances", self.arrays.append, RELIABLE)
        self.node.create_subscription(MarkerArray, "instance_markers", self.markers.append, RELIABLE)


def start(ros, model: Path, *params: str) -> StreetSegmenter:
    args = ["--ros-args", "-p", "threads:=1", "-p", f"model:={model}", *sum((["-p", p] for p in params), [])]
    return ros.add(StreetSegmenter(cli_args=args, use_global_arguments=False))


def test_labels_and_instances_match_the_offline_pipeline(ros, model: Path) -> None:
    segmenter = start(ros, model)
    assert not segmenter.model_error
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0 and feed.infos.get_subscription_count() > 0)
    image, info = camera_messages(0, sec=5)
    feed.infos.publish(info)
    feed.images.publish(image)
    assert ros.spin_until(lambda: feed.labels and feed.arrays and feed.markers, timeout=60)
    labels, array = feed.labels[0], feed.arrays[0]
    assert labels.header == image.header and array.header == image.header and labels.encoding == "mono8"
    predictor, _ = open_street_predictor(str(model), threads=1)
    expected_labels, expected_array, _ = street_from_messages(StreetPipeline(predictor, StreetSettings()), image)
    decoded = image_to_numpy(labels, "mono8")
    assert decoded.shape == (HEIGHT, WIDTH) and np.array_equal(decoded, image_to_numpy(expected_labels, "mono8"))
    assert set(np.unique(decoded).tolist()) == {26}  # the test model's finest stage says car everywhere
    published, expected = instance_results(array), instance_results(expected_array)
    assert len(published) == len(expected) >= 2
    for got, want in zip(published, expected):
        assert np.array_equal(got.mask, want.mask) and got.score == pytest.approx(want.score)
        assert (got.class_id, got.class_name) == (26, "car")
    markers = feed.markers[0].markers
    assert markers[0].action == Marker.DELETEALL
    assert {m.ns for m in markers[1:]} == {"street_outlines", "street_labels"} and len(markers) == 1 + 2 * len(published)
    assert all(p.z == 1.0 for m in markers[1:] if m.type == Marker.LINE_STRIP for p in m.points)
    # a subscriber that joins now still gets the class map
    class_maps: list[ClassMap] = []
    feed.node.create_subscription(ClassMap, "class_map", class_maps.append, LATCHED)
    assert ros.spin_until(lambda: class_maps, timeout=15)
    classes = class_maps[0].classes
    assert [c.name for c in classes] == list(STREET_CLASSES) and class_maps[0].ignore_id == 255
    assert {c.name for c in classes if c.is_thing} == {"person", "car"} and classes[0].id == 7
    # the same frame again: every object keeps its id
    image.header.stamp, info.header.stamp = Time(sec=6), Time(sec=6)
    feed.infos.publish(info)
    feed.images.publish(image)
    assert ros.spin_until(lambda: len(feed.arrays) == 2, timeout=60)
    assert [i.id for i in feed.arrays[1].instances] == [i.id for i in array.instances]
    values = segmenter.status_summary()[2]
    assert {"network_ms", "labels_ms", "instances_ms", "tracking_ms"} <= set(values)


def test_the_coarsest_stage_without_camera_info(ros, model: Path) -> None:
    start(ros, model, "use_camera_info:=false", "stage:=1", "instances:=false")
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    image, _ = camera_messages(1, sec=9)
    feed.images.publish(image)
    assert ros.spin_until(lambda: feed.labels and feed.arrays and feed.markers, timeout=60)
    settings = StreetSettings(stage=1, instances=False)
    predictor, _ = open_street_predictor(str(model), threads=1, settings=settings)
    assert predictor.stages == 1 and not predictor.embedding  # the node runs only the encoder and the first map
    expected, _, _ = street_from_messages(StreetPipeline(predictor, settings), image)
    assert np.array_equal(image_to_numpy(feed.labels[0], "mono8"), image_to_numpy(expected, "mono8"))
    assert not feed.arrays[0].instances
    assert [m.action for m in feed.markers[0].markers] == [Marker.DELETEALL]  # no camera: nothing to draw


def test_a_missing_model_is_reported_and_its_frames_counted(ros, tmp_path: Path) -> None:
    missing = start(ros, tmp_path / "none.safetensors", "use_camera_info:=false")
    level, message, _ = missing.status_summary()
    assert level == 2 and "none.safetensors" in message
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    image, _ = camera_messages(2, sec=11)
    feed.images.publish(image)
    assert ros.spin_until(lambda: missing.counters.as_dict().get("dropped_no_model", 0) == 1, timeout=30)
    assert not feed.arrays


def test_a_malformed_image_is_dropped_and_the_next_one_served(ros, model: Path) -> None:
    segmenter = start(ros, model, "use_camera_info:=false")
    feed = Feed(ros)
    assert ros.spin_until(lambda: feed.images.get_subscription_count() > 0)
    bad = Image(height=HEIGHT, width=WIDTH, encoding="bgr8", step=WIDTH * 3, data=bytes(10))  # truncated
    feed.images.publish(bad)
    assert ros.spin_until(lambda: segmenter.counters.as_dict().get("dropped_malformed", 0) == 1, timeout=30)
    image, _ = camera_messages(3, sec=13)
    feed.images.publish(image)
    assert ros.spin_until(lambda: feed.labels, timeout=60)
    assert image_to_numpy(feed.labels[0], "mono8").shape == (HEIGHT, WIDTH)
