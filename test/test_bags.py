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


def _whole_blocks(data: bytes, compression: str) -> int:
    """The length of the part of a zstd / lz4 frame cut short (`data`) that ends with its last whole block."""
    if compression == "zstd":  # frame header: magic, descriptor, window, dictionary id, content size
        descriptor = data[4]
        single = descriptor >> 5 & 1
        at = 5 + (1 - single) + (0, 1, 2, 4)[descriptor & 3] + (single, 2, 4, 8)[descriptor >> 6]
        whole = at
        while at + 3 <= len(data):  # block header: last flag, type (1: RLE, one byte), size
            head = int.from_bytes(data[at:at + 3], "little")
            at += 3 + (1 if head >> 1 & 3 == 1 else head >> 3)
            if at > len(data):
                break
            whole = at
        return whole
    flags = data[4]  # lz4: magic, flags, block size, content size, dictionary id, header checksum
    at = 7 + 8 * (flags >> 3 & 1) + 4 * (flags & 1)
    whole = at
    while at + 4 <= len(data):  # block: size (top bit: stored uncompressed), data, checksum
        at += 4 + (int.from_bytes(data[at:at + 4], "little") & 0x7FFFFFFF) + 4 * (flags >> 4 & 1)
        if at > len(data):
            break
        whole = at
    return whole


def _messages_in_whole_blocks(content: bytes, cut: int) -> int:
    """How many messages a file of one compressed chunk (`content`) cut at `cut` keeps: those whose records
    lie wholly in the compressed blocks before the cut, as mcap's own zstd / lz4 decoders give them."""
    import io

    import lz4.frame
    import zstandard
    from mcap.reader import make_reader

    (chunk,) = make_reader(io.BytesIO(content)).get_summary().chunk_indexes
    end = chunk.chunk_start_offset + chunk.chunk_length
    data = content[end - chunk.compressed_size:end]
    assert end - chunk.compressed_size < cut < end  # the cut is inside the compressed data
    part = data[:_whole_blocks(data[:cut - (end - chunk.compressed_size)], chunk.compression)]
    decoder = (zstandard.ZstdDecompressor().decompressobj() if chunk.compression == "zstd"
               else lz4.frame.LZ4FrameDecompressor())
    decoded = len(decoder.decompress(part))
    records = (zstandard.ZstdDecompressor().decompress(data) if chunk.compression == "zstd"
               else lz4.frame.decompress(data))
    count, at = 0, 0
    while at < len(records):  # opcode, length, body
        opcode, length = struct.unpack_from("<BQ", records, at)
        at += 9 + length
        count += opcode == 0x05 and at <= decoded
    return count


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
    else:  # zstd and lz4 decode in blocks: every message in the blocks wholly before the cut
        assert len(read) == _messages_in_whole_blocks(content, cut)
        assert len(read) > 0 or fraction == 0.3
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


# --------------------------------------------------------------------------------------- hostile MCAP files

MCAP_MAGIC = b"\x89MCAP0\r\n"


def _mcap_record(opcode: int, body: bytes) -> bytes:
    return struct.pack("<BQ", opcode, len(body)) + body


def _mcap_string(text: str) -> bytes:
    return struct.pack("<I", len(text)) + text.encode()


def _mcap_message(channel_id: int, time_ns: int, data: bytes) -> bytes:
    return _mcap_record(0x05, struct.pack("<HIQQ", channel_id, 0, time_ns, time_ns) + data)


CHATTER = (_mcap_record(0x03, struct.pack("<H", 1) + _mcap_string("std_msgs/msg/String") + _mcap_string("ros2msg")
                        + _mcap_string("string data"))
           + _mcap_record(0x04, struct.pack("<HH", 1, 1) + _mcap_string("/chatter") + _mcap_string("cdr")
                          + struct.pack("<I", 0)))  # schema 1 and channel 1 (no metadata)


HANDMADE_HEAD = MCAP_MAGIC + _mcap_record(0x01, _mcap_string("ros2") + _mcap_string("handmade"))  # magic, Header


def _handmade_mcap(file: Path, data: bytes, summary: bytes = b"") -> Path:
    """An MCAP file put together record by record, as a hostile writer could: a Header, `data` (the data
    section's records), a DataEnd and `summary` as its summary section; every CRC 0 (not checked)."""
    head = HANDMADE_HEAD
    data_end = _mcap_record(0x0F, struct.pack("<I", 0))
    summary_start = len(head) + len(data) + len(data_end) if summary else 0
    file.write_bytes(head + data + data_end + summary + _mcap_record(0x02, struct.pack("<QQI", summary_start, 0, 0))
                     + MCAP_MAGIC)
    return file


def _zstd_bomb(prefix: bytes, expanded: int) -> bytes:
    """A zstd frame of `expanded` bytes in very little: `prefix` as a stored block, then 128 KiB blocks of
    zeros, each written as one repeated byte (4 bytes a block)."""
    block = 1 << 17
    frame = struct.pack("<IBB", 0xFD2FB528, 0, 7 << 3)  # no content size, a window of 2**(10 + 7) bytes
    frame += (len(prefix) << 3).to_bytes(3, "little") + prefix  # a stored block (type 0)
    count = (expanded - len(prefix)) // block
    repeated = ((block << 3) | 1 << 1).to_bytes(3, "little") + b"\0"  # type 1: one byte, repeated
    return frame + repeated * (count - 1) + ((block << 3) | 1 << 1 | 1).to_bytes(3, "little") + b"\0"


def _lz4_bomb(prefix: bytes, expanded: int) -> bytes:
    """An lz4 frame of `expanded` bytes, `prefix` and then zeros (about 250:1)."""
    import lz4.frame

    compressor = lz4.frame.LZ4FrameCompressor(block_size=lz4.frame.BLOCKSIZE_MAX64KB)
    zeros = bytes(1 << 20)
    parts = [compressor.begin(), compressor.compress(prefix)]
    parts += [compressor.compress(zeros) for _ in range((expanded - len(prefix)) >> 20)]
    return b"".join(parts) + compressor.flush()


def _chunk(compression: str, records: bytes, uncompressed_size: int, time_ns: int) -> bytes:
    return _mcap_record(0x06, struct.pack("<QQQI", time_ns, time_ns, uncompressed_size, 0)
                        + _mcap_string(compression) + struct.pack("<Q", len(records)) + records)


@pytest.mark.parametrize("declared", ["small", "huge"])
@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_decompression_bomb_chunk_is_reported_damaged_quickly_in_little_memory(tmp_path, compression, declared):
    import resource
    import time
    import tracemalloc

    first = _mcap_message(1, 1, b"in the bomb")
    expanded = (4 << 30) if compression == "zstd" else (256 << 20)  # 4 GiB in 128 KiB, 256 MiB in 1 MiB
    bomb = (_zstd_bomb if compression == "zstd" else _lz4_bomb)(first, expanded)
    size = len(first) + 9 * 8 if declared == "small" else expanded << 4  # 8 empty records after the message
    file = _handmade_mcap(tmp_path / "bomb.mcap", CHATTER + _chunk(compression, bomb, size, 1)
                          + _mcap_message(1, 2, b"after the bomb"))
    reader = BagReader(file)
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB: the process's peak so far
    tracemalloc.start()
    started = time.perf_counter()
    try:
        read = [m.data for m in reader.messages()]
        peak = tracemalloc.get_traced_memory()[1]  # Python's allocations (the decoded bytes among them)
    finally:
        tracemalloc.stop()
    assert read == [b"after the bomb"]  # and reading goes on after it
    assert peak < 16 << 20 and time.perf_counter() - started < 10, (peak, time.perf_counter() - started)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - resident < 256 << 10  # nor the decoders' own
    (error,) = reader.errors
    message = str(error)
    assert f"{file}: the chunk at byte {len(HANDMADE_HEAD) + len(CHATTER)} is damaged" in message
    if declared == "small":  # decoded up to its declared size, its messages that far listed
        assert f"it decodes to more than the {size} bytes its header says" in message
        assert "/chatter: 1 (at 0.000000001)" in message
    else:
        assert f"its header says it holds {size} bytes, more than the 1073741824 this reader decodes" in message


def test_summary_message_records_are_not_read_or_counted(tmp_path):
    # the summary section holds no Message records; a hostile file's must be neither read nor counted as lost
    file = _handmade_mcap(tmp_path / "x.mcap", CHATTER + _mcap_message(1, 1, b"a") + _mcap_message(1, 2, b"b"),
                          summary=CHATTER + _mcap_message(9, 3, b"x") + _mcap_message(1, 4, b"y"))
    reader = BagReader(file)
    assert [m.data for m in reader.messages()] == [b"a", b"b"] and not reader.errors


@pytest.mark.parametrize("repeat_channels", [True, False])  # the summary lists the channels, or only the chunks do
def test_channel_that_is_not_cdr_leaves_out_only_its_messages(tmp_path, repeat_channels):
    from mcap.writer import CompressionType, Writer

    file = tmp_path / "mixed.mcap"
    with open(file, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.NONE, repeat_channels=repeat_channels,
                        enable_data_crcs=True)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        cdr = writer.register_channel("/a", "cdr", schema)
        json = writer.register_channel("/b", "json", 0)
        for k, channel in enumerate([cdr, json, cdr, json, cdr]):
            writer.add_message(channel, log_time=k, data=f"{k}".encode(), publish_time=k)
        writer.finish()
    reader = BagReader(file)
    assert [m.data for m in reader.messages()] == [b"0", b"2", b"4"]
    (error,) = reader.errors
    assert f"{file}: 2 messages" in str(error) and "/b: 2 (json, not cdr)" in str(error)


def test_damaged_chunk_report_is_bounded(tmp_path):
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    file = tmp_path / "many.mcap"
    with open(file, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.NONE, enable_data_crcs=True)
        writer.start(profile="ros2", library="test")
        channel = writer.register_channel("/a", "cdr", writer.register_schema("std_msgs/msg/String", "ros2msg", b""))
        for k in range(1, 3001):
            writer.add_message(channel, log_time=k, data=b"x", publish_time=k)
        writer.finish()
    with open(file, "rb") as stream:
        (chunk,) = make_reader(stream).get_summary().chunk_indexes
    _flip(file, chunk.chunk_start_offset + chunk.chunk_length // 2)
    reader = BagReader(file)
    assert list(reader.messages()) == []
    (error,) = reader.errors
    assert "/a: 3000 (from 0.000000001 to 0.000003000)" in str(error) and len(str(error)) < 400, str(error)[:600]


HOSTILE_METADATA = {
    "list at the top": "- 1\n- 2\n",
    "information is a list": "rosbag2_bagfile_information: [1, 2]\n",
    "information is a string": "rosbag2_bagfile_information: text\n",
    "deep nesting": "rosbag2_bagfile_information: " + "[" * 2000 + "]" * 2000 + "\n",
    "infinite count": "rosbag2_bagfile_information:\n  files: [{path: plain.mcap, message_count: .inf}]\n",
    "wrong types": "rosbag2_bagfile_information:\n  files: [{path: [1], message_count: x}, 5, {}]\n"
                   "  topics_with_message_count: {a: 1}\n",
    "entries of the wrong kind": "rosbag2_bagfile_information:\n  files: text\n"
                                 "  topics_with_message_count: [{topic_metadata: {name: [x]}, message_count: 1}]\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_METADATA))
def test_hostile_metadata_yaml_does_not_stop_reading(tmp_path, frames, case):
    bag, file, intact = _bag(tmp_path, frames)
    (bag / "metadata.yaml").write_text(HOSTILE_METADATA[case])
    reader = BagReader(bag)
    assert [m.data for m in reader.messages()] == [m.data for m in intact] and not reader.errors
    os.truncate(file, file.stat().st_size // 2)  # damage: the lost messages cannot be counted, and it says so
    reader = BagReader(bag)
    read = list(reader.messages())
    assert [m.data for m in read] == [m.data for m in intact[:len(read)]]
    (error,) = reader.errors
    assert "unreadable from byte" in str(error)
    assert "metadata.yaml" in str(error) and "not counted" in str(error), str(error)


# -------------------------------------------------------------------------------------------------- fuzzing

def _small_chunks_mcap(folder: Path, compression: str) -> Path:
    """An MCAP file from the mcap library in 2 KiB chunks: 120 messages of 20-400 bytes on three topics, each
    logged at its index and with a payload found nowhere else in the file."""
    import random

    from mcap.writer import Writer

    from refine_perception.bags.writer import CHUNK_COMPRESSIONS

    rng = random.Random(7)
    folder.mkdir()
    file = folder / "small.mcap"
    with open(file, "wb") as stream:
        writer = Writer(stream, chunk_size=2048, compression=CHUNK_COMPRESSIONS[compression], enable_data_crcs=True)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        channels = [writer.register_channel(topic, "cdr", schema) for topic in ("/a", "/b", "/c")]
        for k in range(120):
            payload = f"<message {k}>".encode() + rng.randbytes(rng.randrange(20, 400))
            writer.add_message(channels[k % 3], log_time=k, data=payload, publish_time=k)
        writer.finish()
    return file


@pytest.mark.parametrize("kind", ["lane bag", "small chunks"])
@pytest.mark.parametrize("compression", ["", "zstd", "lz4"])
def test_fuzzed_mcap_raises_or_reports_only_bag_errors(tmp_path, frames, compression, kind):
    """Cuts and flipped bytes anywhere (random, seeded) and in the headers, chunk headers, summary and footer:
    reading (the API and `bag info`) never fails with anything but a BagError, keeps every message of the chunks
    before the damage (with chunks stored uncompressed: every message before a cut) and never hides damage."""
    import contextlib
    import io
    import random

    from mcap.reader import make_reader

    from refine_perception.cli.main import main

    if kind == "lane bag":
        path, file, intact = _bag(tmp_path, frames, compression)
    else:
        file = path = _small_chunks_mcap(tmp_path / "small", compression)
        intact = list(BagReader(path).messages())
    content = file.read_bytes()
    size = len(content)
    summary = make_reader(io.BytesIO(content)).get_summary()
    assert summary is not None and len(intact) in (12, 120)
    chunks = [(c.chunk_start_offset, c.chunk_start_offset + c.chunk_length, c.message_end_time)
              for c in summary.chunk_indexes]
    assert len(chunks) == 1 if kind == "lane bag" else len(chunks) > 10
    summary_start = struct.unpack_from("<Q", content, size - FOOTER_AND_MAGIC + 9)[0]
    ends = [content.find(m.data) + len(m.data) for m in intact]  # (where the chunks are stored uncompressed)
    rng = random.Random(f"{compression} {kind}")
    near = {0, 7, 8, 9, 20, summary_start, summary_start + 9, size - FOOTER_AND_MAGIC, size - 8, size - 1}
    near |= {at + d for start, end, _ in chunks[:3] for at in (start, end) for d in (0, 9, 33, 40, 50)}
    targeted = sorted(p for p in near | set(range(40)) | set(range(size - FOOTER_AND_MAGIC, size))
                      | {start + d for start, _, _ in chunks[:3] for d in range(60)}
                      | set(range(summary_start, min(summary_start + 40, size))) if 0 <= p < size)
    cuts = sorted(p for p in near if 0 <= p < size) + [rng.randrange(size) for _ in range(40)]
    flips = targeted + [rng.randrange(size) for _ in range(40)]

    def before(position: int) -> int:
        """How many messages lie in the chunks that end before `position`."""
        last = max((time_ns for _, end, time_ns in chunks if end <= position), default=-1)
        return sum(1 for m in intact if m.time_ns <= last)

    for case, (what, position) in enumerate([("cut", p) for p in cuts] + [("flip", p) for p in flips]):
        damaged = bytearray(content[:position] if what == "cut" else content)
        if what == "flip":
            damaged[position] ^= rng.randrange(1, 256)
        file.write_bytes(damaged)
        reader = BagReader(path)
        status = None
        try:
            read = [m.data for m in reader.messages()]
            if case % 4 == 0:  # (a quarter of the cases: it reads the bag again)
                with contextlib.redirect_stdout(io.StringIO()):
                    status = main(["bag", "info", str(path)])
        except Exception as error:  # noqa: BLE001 - what this test is for
            pytest.fail(f"{what} at byte {position} of {size}: {type(error).__name__}: {error}")
        assert status in (None, 1 if reader.errors else 0)
        assert all(isinstance(e, BagError) for e in reader.errors)
        assert reader.errors or read == [m.data for m in intact], f"{what} at {position}: damage not reported"
        kept = before(position)
        assert read[:kept] == [m.data for m in intact[:kept]], f"{what} at {position}: {len(read)} of {kept} kept"
        if what == "cut":
            assert read == [m.data for m in intact[:len(read)]]
            if not compression:
                assert len(read) == sum(1 for end in ends if end <= position), f"cut at {position}"


def test_bag_writer_hook_into_rosbags_is_in_place(tmp_path):
    """BagWriter puts McapStorage in through rosbags' private `Writer.STORAGE_PLUGINS` (as of the pinned
    rosbags 0.11.9): if rosbags renames it, rosbags' own MCAP writer (CRCs 0) would write bags unnoticed."""
    from mcap.reader import make_reader
    from rosbags.rosbag2 import StoragePlugin, Writer

    assert StoragePlugin.MCAP in getattr(Writer, "STORAGE_PLUGINS", {}), (
        "rosbags no longer has Writer.STORAGE_PLUGINS: update BagWriter's McapStorage hook (writer.py)")
    with BagWriter(tmp_path / "bag") as writer:
        writer.write_raw("/a", "std_msgs/msg/String", b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00", 1)
    (file,) = (tmp_path / "bag").glob("*.mcap")
    with open(file, "rb") as stream:
        assert make_reader(stream).get_header().library.startswith("refine_perception"), (
            "the bag was not written by McapStorage: rosbags' Writer ignores STORAGE_PLUGINS now")
