"""Lane bags: written here, read back by rosbags, by the mcap tools and by our tolerant reader with every
field intact; damaged bags give errors that name the file and the place, and keep what was readable."""

from __future__ import annotations

import glob
import os
import struct
import subprocess
import sys
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
from refine_perception.bags.reader import BagError, BagMessage, BagReader
from refine_perception.bags.writer import BagWriter

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
    bag_path = tmp_path / "bad"
    write_lane_bag(bag_path, frames[:2])
    with BagWriter(tmp_path / "bad2", "mcap") as writer:  # the same bag plus a garbage ground-truth message
        for message in BagReader(bag_path).messages():
            writer.write_raw(message.topic, message.msgtype, message.data, message.time_ns)
        writer.write_raw(TRUTH_LANES_TOPIC, "refine_msgs/msg/LaneArray", b"\x00\x01\x00\x00" + b"\xff" * 40, 1)
    bag = read_lane_bag(tmp_path / "bad2")
    assert len(bag.stamps) == 2 and len(bag.truth) == 2
    assert len(bag.errors) == 1 and "not a valid refine_msgs/msg/LaneArray" in str(bag.errors[0])


def test_chunk_compression_is_checked(tmp_path):
    with pytest.raises(ValueError, match="MCAP only"):
        BagWriter(tmp_path / "a", "sqlite3", compression="zstd")
    with pytest.raises(ValueError, match="zstd, lz4 or none"):
        BagWriter(tmp_path / "b", "mcap", compression="gzip")


def test_missing_bag_is_a_clear_error(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        BagReader(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no .mcap or .db3 files"):
        BagReader(Path(tmp_path / "empty"))


# ---------------------------------------------------------------------------------------------- damaged MCAP

COMPRESSED_IMAGE_TOPIC = f"{IMAGE_TOPIC}/compressed"
FOOTER_AND_MAGIC = 29 + 8  # the Footer record (opcode, length, 20 bytes) and the closing magic


@pytest.fixture(scope="module")
def frames8():
    return list(drive_frames("synthetic:drive?seed=4&frames=8"))


def _bag(tmp_path: Path, frames, compression: str = "", transport: str = "compressed"
         ) -> tuple[Path, Path, list[BagMessage]]:
    """A lane bag of `frames` with its MCAP chunks compressed as asked (zstd and lz4 are what ros2's MCAP
    storage writes): the bag folder, its .mcap file and its messages, read while intact."""
    bag = tmp_path / "plain"
    write_lane_bag(bag, frames, transport=transport)
    if compression:
        with BagWriter(tmp_path / compression, "mcap", compression=compression) as writer:
            for message in BagReader(bag).messages():
                writer.write_raw(message.topic, message.msgtype, message.data, message.time_ns)
        bag = tmp_path / compression
    (file,) = bag.glob("*.mcap")
    messages = list(BagReader(bag).messages())
    return bag, file, messages


def _log_time(message: BagMessage) -> str:
    return f"{message.time_ns // 10**9}.{message.time_ns % 10**9:09d}"


def _flip(file: Path, position: int) -> None:
    with open(file, "r+b") as stream:
        stream.seek(position)
        byte = stream.read(1)[0]
        stream.seek(position)
        stream.write(bytes([byte ^ 0xFF]))


@pytest.mark.parametrize("compression", ["", "zstd", "lz4"])
def test_written_mcap_carries_crcs_that_mcap_and_rosbags_check(tmp_path, frames, compression):
    from mcap.reader import make_reader
    from mcap.stream_reader import CRCValidationError, StreamReader
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2.errors import ReaderError

    bag, file, messages = _bag(tmp_path, frames, compression, transport="raw")
    with AnyReader([bag]) as reader:
        assert [raw for _, _, raw in reader.messages()] == [m.data for m in messages] and len(messages) == 12
    with open(file, "rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None and len(summary.chunk_indexes) == 3  # a raw frame fills a 1 MiB chunk
    content = file.read_bytes()
    for index in summary.chunk_indexes:  # Chunk: opcode, length, start, end, uncompressed size, then the CRC
        assert struct.unpack_from("<I", content, index.chunk_start_offset + 9 + 24)[0] != 0
    summary_start = struct.unpack_from("<Q", content, len(content) - FOOTER_AND_MAGIC + 9)[0]
    assert struct.unpack_from("<I", content, summary_start - 4)[0] != 0  # DataEnd, just before the summary
    assert struct.unpack_from("<I", content, len(content) - 8 - 4)[0] != 0  # the Footer's summary CRC
    assert sum(1 for _ in StreamReader(str(file), validate_crcs=True).records) > len(messages)
    if compression:  # (a flipped byte in compressed data mostly breaks the decoding itself)
        return
    last = summary.chunk_indexes[-1]
    _flip(file, last.chunk_start_offset + last.chunk_length // 2)  # inside the last image
    with pytest.raises(CRCValidationError):
        for _ in StreamReader(str(file), validate_crcs=True).records:
            pass
    with pytest.raises(ReaderError, match="checksum"), AnyReader([bag]) as reader:
        for _ in reader.messages():
            pass


@pytest.mark.parametrize("cut", ["magic", "footer", "summary"])
def test_cut_in_the_summary_keeps_every_message_and_reports_it(tmp_path, frames8, cut):
    bag, file, intact = _bag(tmp_path, frames8)
    size = file.stat().st_size
    summary_start = struct.unpack_from("<Q", file.read_bytes(), size - FOOTER_AND_MAGIC + 9)[0]
    os.truncate(file, {"magic": size - 3, "footer": size - 30, "summary": (summary_start + size) // 2}[cut])
    reader = BagReader(bag)
    assert [m.data for m in reader.messages()] == [m.data for m in intact] and len(intact) == 32
    (error,) = reader.errors
    assert str(file) in str(error) and "summary" in str(error) and "all 32 messages" in str(error)
    assert len(read_lane_bag(bag).stamps) == 8
    # what a user sees: every message counted, the damage named, exit status 1, no traceback
    info = subprocess.run([sys.executable, "-m", "refine_perception.cli.main", "bag", "info", str(bag)],
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 1 and "32 messages" in info.stdout and "summary" in info.stdout, info.stderr
    assert "Traceback" not in info.stderr


@pytest.mark.parametrize("fraction", [0.3, 0.7])
@pytest.mark.parametrize("compression", ["", "zstd", "lz4"])
def test_cut_inside_a_chunk_keeps_the_messages_before_it(tmp_path, frames8, compression, fraction):
    bag, file, intact = _bag(tmp_path, frames8, compression)
    content = file.read_bytes()
    cut = int(len(content) * fraction)
    os.truncate(file, cut)
    reader = BagReader(bag)
    read = list(reader.messages())
    assert [m.data for m in read] == [m.data for m in intact[:len(read)]]
    if not compression:  # every message whose record lies wholly before the cut
        assert len(read) == sum(1 for m in intact if content.find(m.data) + len(m.data) <= cut) > 0
    elif fraction == 0.7:  # zstd and lz4 decode in blocks: the messages of the blocks before the cut
        assert len(read) > 0
    frames = sum(1 for m in read if m.topic == COMPRESSED_IMAGE_TOPIC)
    (error,) = reader.errors
    message = str(error)
    assert f"{file}: unreadable from byte" in message and "cut short" in message
    assert f"{32 - len(read)} of the 32 messages" in message
    assert f"{COMPRESSED_IMAGE_TOPIC} {8 - frames} of 8" in message
    if frames:  # (a lane bag without images is an error of its own)
        lane_bag = read_lane_bag(bag)
        assert len(lane_bag.stamps) == frames and len(lane_bag.errors) == 1


@pytest.mark.parametrize("compression", ["", "zstd"])
@pytest.mark.parametrize("damaged", [0, 1, 2])
def test_flipped_byte_in_a_chunk_is_reported_with_its_frames_and_reading_goes_on(tmp_path, frames, damaged,
                                                                                   compression):
    from mcap.reader import make_reader

    bag, file, intact = _bag(tmp_path, frames, compression, transport="raw")
    with open(file, "rb") as stream:
        chunk = make_reader(stream).get_summary().chunk_indexes[damaged]
    # a raw frame fills a chunk: its truth, tags, CameraInfo and image, all logged at its stamp
    in_chunk = [m for m in intact if chunk.message_start_time <= m.time_ns <= chunk.message_end_time]
    assert [m.topic for m in in_chunk] == [TRUTH_LANES_TOPIC, TRUTH_TAGS_TOPIC, CAMERA_INFO_TOPIC, IMAGE_TOPIC]
    _flip(file, chunk.chunk_start_offset + chunk.chunk_length // 2)  # inside the image
    reader = BagReader(bag)
    assert [m.data for m in reader.messages()] == [m.data for m in intact if m not in in_chunk]
    (error,) = reader.errors
    message = str(error)
    assert f"{file}: the chunk at byte {chunk.chunk_start_offset} is damaged" in message
    # a flipped byte in zstd data may also break the decoding, or change the decoded size
    problems = ["fails its CRC"] + (["zstd data does not decode", "it decodes to"] if compression else [])
    assert any(problem in message for problem in problems)
    assert "its 4 messages are left out as damaged" in message
    assert all(f"{m.topic}: 1 (at {_log_time(m)})" in message for m in in_chunk)
    lane_bag = read_lane_bag(bag)
    assert len(lane_bag.stamps) == 2 and len(lane_bag.truth) == 2 and len(lane_bag.errors) == 1


@pytest.mark.parametrize("where", ["summary", "message index"])
def test_flipped_byte_outside_the_chunks_is_reported_and_every_message_read(tmp_path, frames8, where):
    from mcap.reader import make_reader

    bag, file, intact = _bag(tmp_path, frames8)
    with open(file, "rb") as stream:
        (chunk,) = make_reader(stream).get_summary().chunk_indexes
    size = file.stat().st_size
    summary_start = struct.unpack_from("<Q", file.read_bytes(), size - FOOTER_AND_MAGIC + 9)[0]
    # a channel id in the first MessageIndex record after the chunk (opcode, length, then the id), or a
    # byte inside the summary's records
    _flip(file, chunk.chunk_start_offset + chunk.chunk_length + 9 if where == "message index"
          else (summary_start + size - FOOTER_AND_MAGIC) // 2)
    reader = BagReader(bag)
    assert [m.data for m in reader.messages()] == [m.data for m in intact]
    (error,) = reader.errors
    part = "summary" if where == "summary" else "data section"
    assert str(file) in str(error) and f"{part} fails its CRC" in str(error) and "all 32 messages" in str(error)
