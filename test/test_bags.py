"""Lane bags: written here, read back by rosbags, by the mcap tools and by our tolerant reader with every
field intact; damaged bags give errors that name the file and the place, and keep what was readable."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest

from refine_perception.bags.frames import CAMERA_INFO_TOPIC, IMAGE_TOPIC, camera_topics
from refine_perception.bags.lane_bags import (
    TRUTH_LANES_TOPIC,
    TRUTH_TAGS_TOPIC,
    drive_frames,
    read_lane_bag,
    write_lane_bag,
)
from refine_perception.bags.reader import BagError, BagReader

DRIVE = "synthetic:drive?seed=4&frames=3"


@pytest.fixture(scope="module")
def frames():
    return list(drive_frames(DRIVE))


def _point_rows(points) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in points], dtype=np.float64).reshape(-1, 3)


def _check_lanes(decoded, frame) -> None:
    assert len(decoded.lanes) == len(frame.lanes)
    by_id = {lane.track_id: lane for lane in decoded.lanes}
    for k, lane_id in enumerate(frame.ids):
        lane = by_id[lane_id]
        np.testing.assert_allclose(_point_rows(lane.image_points)[:, :2], frame.lanes[k], atol=1e-3)
        np.testing.assert_allclose(_point_rows(lane.ground_points)[:, :2], frame.ground[k][:, :2], atol=1e-3)
        assert len(lane.fit_coeffs) > 0 and lane.fit_space == 1  # ground fit
        assert lane.score == 1.0 and lane.type > 0


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_bag_reads_back_in_rosbags_with_every_field(tmp_path, frames, storage):
    from rosbags.highlevel import AnyReader

    bag = tmp_path / "drive"
    assert write_lane_bag(bag, frames, storage=storage, transport="raw") == 3
    seen: dict[str, list] = {}
    with AnyReader([bag]) as reader:  # the definitions come from the bag itself
        for connection, time_ns, raw in reader.messages():
            seen.setdefault(connection.topic, []).append((time_ns, reader.deserialize(raw, connection.msgtype)))
    assert sorted(seen) == sorted([f"{IMAGE_TOPIC}", CAMERA_INFO_TOPIC, TRUTH_LANES_TOPIC, TRUTH_TAGS_TOPIC])
    for k, frame in enumerate(frames):
        time_ns, image = seen[IMAGE_TOPIC][k]
        stamp = image.header.stamp.sec * 10**9 + image.header.stamp.nanosec
        assert stamp == time_ns and image.encoding == "bgr8" and image.header.frame_id == "camera_optical_frame"
        assert np.array_equal(np.asarray(image.data).reshape(frame.image.shape), frame.image)
        info = seen[CAMERA_INFO_TOPIC][k][1]
        assert info.header.stamp == image.header.stamp and (info.width, info.height) == (1640, 590)
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), frame.camera_matrix)
        truth = seen[TRUTH_LANES_TOPIC][k][1]
        assert truth.header.stamp == image.header.stamp and truth.ground_frame_id == "base_footprint"
        _check_lanes(truth, frame)
        assert list(seen[TRUTH_TAGS_TOPIC][k][1].tags) == list(frame.tags)


def test_mcap_tools_decode_our_bag(tmp_path, frames):
    from mcap_ros2.reader import read_ros2_messages

    bag = tmp_path / "drive"
    write_lane_bag(bag, frames)
    (file,) = glob.glob(str(bag / "*.mcap"))
    decoded = {}
    for message in read_ros2_messages(file):  # schemas embedded as ros2msg text
        decoded.setdefault(message.channel.topic, []).append(message.ros_msg)
    assert [m.tags for m in decoded[TRUTH_TAGS_TOPIC]] == [list(f.tags) for f in frames]
    for truth, frame in zip(decoded[TRUTH_LANES_TOPIC], frames):
        _check_lanes(truth, frame)
    assert all("jpeg" in m.format and len(m.data) > 1000 for m in decoded[f"{IMAGE_TOPIC}/compressed"])


def test_our_reader_gives_the_rclpy_messages_back(tmp_path, frames):
    bag_path = tmp_path / "drive"
    write_lane_bag(bag_path, frames, storage="sqlite3")
    bag = read_lane_bag(bag_path)
    assert bag.image_topic == f"{IMAGE_TOPIC}/compressed" and bag.compressed
    assert bag.camera_info_topic == CAMERA_INFO_TOPIC and not bag.errors
    assert len(bag.stamps) == 3 and set(bag.truth) == set(bag.stamps)
    assert [bag.tags[s] for s in bag.stamps] == [f.tags for f in frames]
    for stamp, frame in zip(bag.stamps, frames):
        _check_lanes(bag.truth[stamp], frame)


def test_camera_topic_choice():
    topics = {"/a/image": "sensor_msgs/msg/Image", "/b/image/compressed": "sensor_msgs/msg/CompressedImage",
              "/a/info": "sensor_msgs/msg/CameraInfo"}
    with pytest.raises(BagError, match="2 image topics"):
        camera_topics(topics)
    assert camera_topics(topics, "/a/image") == ("/a/image", "/a/info")
    with pytest.raises(BagError, match="not an Image/CompressedImage topic"):
        camera_topics(topics, "/a/info")
    assert camera_topics({"/x": "sensor_msgs/msg/Image"}) == ("/x", None)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_names_file_and_place_and_keeps_what_it_can(tmp_path, storage):
    bag_path = tmp_path / "drive"
    # 16 frames: 2.5 MB, so the MCAP writer's 1 MiB chunks leave whole ones before the cut
    write_lane_bag(bag_path, drive_frames("synthetic:drive?seed=4&frames=16"), storage=storage)
    (file,) = [p for p in bag_path.iterdir() if p.suffix in (".mcap", ".db3")]
    os.truncate(file, int(file.stat().st_size * 0.7))
    bag = read_lane_bag(bag_path)
    assert 0 < len(bag.stamps) < 16
    assert len(bag.errors) == 1
    message = str(bag.errors[0])
    assert str(file) in message
    assert ("from byte" in message) if storage == "mcap" else ("from message row" in message and "cut short" in message)


def test_garbage_message_is_reported_not_fatal(tmp_path, frames):
    from refine_perception.bags.writer import BagWriter

    bag_path = tmp_path / "bad"
    write_lane_bag(bag_path, frames[:2])
    with BagWriter(tmp_path / "bad2", "mcap") as writer:  # the same bag plus a garbage ground-truth message
        for message in BagReader(bag_path).messages():
            writer.write_raw(message.topic, message.msgtype, message.data, message.time_ns)
        writer.write_raw(TRUTH_LANES_TOPIC, "refine_msgs/msg/LaneArray", b"\x00\x01\x00\x00" + b"\xff" * 40, 1)
    bag = read_lane_bag(tmp_path / "bad2")
    assert len(bag.stamps) == 2 and len(bag.truth) == 2
    assert len(bag.errors) == 1 and "not a valid refine_msgs/msg/LaneArray" in str(bag.errors[0])


def test_missing_bag_is_a_clear_error(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        BagReader(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no .mcap or .db3 files"):
        BagReader(Path(tmp_path / "empty"))
