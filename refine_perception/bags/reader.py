"""Reading rosbag2 bags from any recorder: a rosbag2 folder (metadata.yaml plus .mcap or .db3 files) or
a single .mcap / .db3 file.

Reading is sequential and tolerant: MCAP is read record by record (not through its index, which a bag
cut short by a crash or a full disk does not have) and sqlite3 row by row, so a damaged bag yields every
message before the damage and then records a `BagError` naming the file and the position (byte offset
or row), and how many of the messages metadata.yaml lists were not read, instead of yielding nothing.
An MCAP file is checked against its CRCs: a chunk that fails its own is left out with its messages
listed, and reading goes on; a cut inside a chunk keeps the chunk's messages before the cut; damage to
the data section outside the chunks, or to the summary, is reported with every message read. Hostile input
is bounded: a chunk is decoded no further than its header's size (a decompression bomb is damage), and a
metadata.yaml that is not what ros2 writes only takes its message counts away from the reports.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

import lz4.frame
import yaml
from mcap.opcode import Opcode
from rclpy.serialization import deserialize_message

from refine_perception.ros.messages import import_message_type

try:  # Python 3.14's zstd module, or its backport (which rosbags requires before 3.14)
    from compression import zstd
except ImportError:
    from backports import zstd

log = logging.getLogger(__name__)
T = TypeVar("T")


class BagError(RuntimeError):
    """A bag that cannot be read (further); the message names the file and where."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str  # pkg/msg/Name
    time_ns: int  # the recorder's log time
    data: bytes  # CDR, as sent over DDS

    def decode(self) -> Any:
        """The rclpy message; BagError when the bytes are not a valid message of the type."""
        try:
            return deserialize_message(self.data, import_message_type(self.msgtype))
        except Exception as error:  # noqa: BLE001 - rclpy raises various types for malformed CDR
            raise BagError(f"message on {self.topic} logged at {self.time_ns} ns: not a valid {self.msgtype} "
                           f"({type(error).__name__}: {error})") from error


def storage_files(path: Path) -> list[Path]:
    """The data files of a bag: the file itself, or a folder's .mcap / .db3 files in name order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BagError(f"{path}: no such bag (a rosbag2 folder or a .mcap / .db3 file)")
    files = sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    if not files:
        raise BagError(f"{path}: no .mcap or .db3 files in this folder")
    return files


class BagReader:
    """Messages of a bag in recorded order; `errors` lists what could not be read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files = storage_files(self.path)
        self.errors: list[BagError] = []

    def messages(self, topics: set[str] | None = None) -> Iterator[BagMessage]:
        """The messages on `topics` (all: None). Damage is logged and added to `errors` as it is met; damage
        that ends a file early says how many of the messages metadata.yaml lists for the file were lost."""
        self.errors = []
        recorded, uncounted = _recorded_counts(self.path)
        for file in self.files:
            read = _read_mcap if _is_mcap(file) else _read_sqlite
            counts: Counter[str] = Counter()
            try:
                for item in read(file):
                    if isinstance(item, BagError):
                        self._damage(item)
                        continue
                    counts[item.topic] += 1
                    if topics is None or item.topic in topics:
                        yield item
            except BagError as error:
                self._damage(BagError(f"{error}{_not_read(recorded.get(file.name), counts, uncounted)}"))

    def _damage(self, error: BagError) -> None:
        log.error("%s", error)
        self.errors.append(error)

    def topics(self) -> dict[str, str]:
        """topic -> type of every message in the bag (a full read)."""
        found: dict[str, str] = {}
        for message in self.messages():
            found.setdefault(message.topic, message.msgtype)
        return found


METADATA_LIMIT = 4 << 20  # bytes; ros2 writes a few hundred per data file and topic


def _recorded_counts(path: Path) -> tuple[dict[str, tuple[int, dict[str, int]]], str]:
    """Per data file of a rosbag2 folder, the message count its metadata.yaml gives, and the counts per
    topic when the bag has that one file; and why there are none ('' without a metadata.yaml: a crashed
    recorder may not have written one). The counts only add to damage reports, so a metadata.yaml that is
    unreadable or not what ros2 writes (hostile: wrong types, deep nesting, huge) just leaves them out."""
    metadata = path / "metadata.yaml"
    if not metadata.is_file():
        return {}, ""
    try:
        if metadata.stat().st_size > METADATA_LIMIT:
            raise ValueError(f"{metadata.stat().st_size} bytes, more than {METADATA_LIMIT}")
        info = _field(yaml.safe_load(metadata.read_text()), "rosbag2_bagfile_information", dict)
        files = {Path(_field(entry, "path", str)).name: _field(entry, "message_count", int)
                 for entry in _field(info, "files", list, [])}
        topics = {_field(_field(entry, "topic_metadata", dict), "name", str): _field(entry, "message_count", int)
                  for entry in _field(info, "topics_with_message_count", list, [])}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as error:
        uncounted = f"the messages lost are not counted: {metadata} is unreadable ({type(error).__name__}: {error})"
        log.warning("%s", uncounted)
        return {}, uncounted
    return {name: (count, topics if len(files) == 1 else {}) for name, count in files.items()}, ""


def _field(mapping: object, key: str, kind: type[T], default: T | None = None) -> T:
    """mapping[key], checked to be a `kind`; ValueError when it is not there or not one."""
    value = mapping.get(key, default) if isinstance(mapping, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"{key} is missing or not a {kind.__name__}")
    return value


def _not_read(recorded: tuple[int, dict[str, int]] | None, counts: Counter[str], uncounted: str) -> str:
    """How many of the messages recorded in a file (`recorded`, see _recorded_counts) were not read, or
    why that is not known (`uncounted`)."""
    if recorded is None:
        return f"; {uncounted}" if uncounted else ""
    if recorded[0] <= sum(counts.values()):
        return ""
    total, topics = recorded
    missing = [f"{topic} {count - counts[topic]} of {count}" for topic, count in sorted(topics.items())
               if count > counts[topic]]
    return (f"; {total - sum(counts.values())} of the {total} messages metadata.yaml lists for it were not read"
            + (f": {', '.join(missing)}" if missing else ""))


def _is_mcap(file: Path) -> bool:
    if file.suffix == ".mcap":
        return True
    with open(file, "rb") as stream:
        return stream.read(5) == b"\x89MCAP"


MAGIC = b"\x89MCAP0\r\n"
RECORD_HEAD = struct.Struct("<BQ")  # opcode, length of the body
CHUNK_HEAD = struct.Struct("<QQQI")  # message start and end time, uncompressed size, uncompressed CRC
FOOTER = struct.Struct("<BQQQI")  # the whole record: opcode, length, summary start, summary offset start, CRC
MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
DECODE_STEP = 1 << 16  # compressed bytes fed to a decoder at a time, so a damaged stream keeps what came before
# The most a compressed chunk may hold, uncompressed. Recorders close a chunk at about 1 MiB (ros2: 768 KiB),
# so a chunk is that plus at most one message, and no ROS 2 message comes near 1 GiB; a header declaring
# more is damaged or hostile, and decoding it would take that much memory.
CHUNK_LIMIT = 1 << 30
DECODERS: dict[str, Any] = {"zstd": zstd.ZstdDecompressor, "lz4": lz4.frame.LZ4FrameDecompressor}


class _Channel(NamedTuple):
    topic: str
    msgtype: str  # pkg/msg/Name, from the channel's schema ('' without one)
    encoding: str  # of its messages: this reader reads cdr


class _Cut(Exception):
    """A record that runs past the end of the bytes it is read from."""


def _log_time(time_ns: int) -> str:
    return f"{time_ns // 10**9}.{time_ns % 10**9:09d}"


def _string(body: memoryview, at: int) -> tuple[str, int]:
    """The length-prefixed string at `at` and the offset after it."""
    (length,) = struct.unpack_from("<I", body, at)
    if at + 4 + length > len(body):
        raise ValueError(f"a string of {length} bytes runs past its record")
    return bytes(body[at + 4:at + 4 + length]).decode(), at + 4 + length


def _records(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """(opcode, body) of each record in `data`; _Cut when the last one is incomplete."""
    at = 0
    while at < len(data):
        if at + RECORD_HEAD.size > len(data):
            raise _Cut
        opcode, length = RECORD_HEAD.unpack_from(data, at)
        at += RECORD_HEAD.size
        if length > len(data) - at:
            raise _Cut
        yield opcode, data[at:at + length]
        at += length


def _decompress(compression: str, data: memoryview, size: int) -> tuple[bytes, str]:
    """As much of a chunk's records as `data` decodes to, at most `size` bytes (its header's uncompressed
    size), and why not all of it ('' when nothing went wrong): zstd and lz4 decode block by block, so a
    stream cut short or damaged still gives what came before; decoding stops past `size` (and `size` is
    at most CHUNK_LIMIT), so a few bytes that expand to gigabytes cost no more memory than that."""
    if not compression:
        return bytes(data), ""
    if compression not in DECODERS:
        return b"", f"unknown compression {compression!r}"
    if size > CHUNK_LIMIT:
        return b"", f"its header says it holds {size} bytes, more than the {CHUNK_LIMIT} this reader decodes"
    decoder = DECODERS[compression]()
    decoded: list[bytes] = []
    total = 0
    try:
        for at in range(0, len(data), DECODE_STEP):
            # one byte past `size` tells a stream that decodes to more from one that fits
            decoded.append(decoder.decompress(data[at:at + DECODE_STEP], max_length=size + 1 - total))
            total += len(decoded[-1])
            if total > size:
                return b"".join(decoded)[:size], f"it decodes to more than the {size} bytes its header says"
            if decoder.eof:  # the frame is whole: bytes after it are not records (the size check tells)
                break
    except (zstd.ZstdError, RuntimeError, EOFError, ValueError) as error:
        return b"".join(decoded), f"its {compression} data does not decode ({error})"
    return b"".join(decoded), ""


@dataclass
class _Times:
    """How many messages there are, and the first and last of their log times: a damaged chunk is reported
    per topic with these, not with every log time (which could run to millions)."""

    count: int = 0
    first: int = 0
    last: int = 0

    def add(self, time_ns: int) -> None:
        self.merge(_Times(1, time_ns, time_ns))

    def merge(self, other: _Times) -> None:
        if other.count:
            self.first = min(self.first, other.first) if self.count else other.first
            self.last = max(self.last, other.last) if self.count else other.last
            self.count += other.count

    def __str__(self) -> str:
        if self.first == self.last:
            return f"{self.count} (at {_log_time(self.first)})"
        return f"{self.count} (from {_log_time(self.first)} to {_log_time(self.last)})"


@dataclass
class _DamagedChunk:
    """A chunk left out as damaged, reported once the MessageIndex records that follow it (which list its
    messages whatever became of its data) are read; without them, its messages as far as its records parse."""

    position: int
    problem: str
    channels: dict[int, _Channel]  # the known ones and the chunk's own (for the topic names)
    parsed: dict[int, _Times] = field(default_factory=dict)  # channel id -> its messages, from the records
    unparsed: bool = False  # records that did not parse
    indexed: dict[int, _Times] = field(default_factory=dict)  # the same, from the MessageIndex records

    def add_index(self, body: memoryview) -> None:
        """A MessageIndex record: channel id, then (log time, offset) pairs behind their byte count."""
        times = _Times()
        try:
            channel_id, length = struct.unpack_from("<HI", body)
            for time_ns, _ in struct.iter_unpack("<QQ", body[6:6 + length]):
                times.add(time_ns)
        except struct.error:
            return  # damaged too: the records' own listing stands
        if times.count:
            self.indexed.setdefault(channel_id, _Times()).merge(times)

    def report(self, file: Path) -> BagError:
        topics: dict[str, _Times] = {}
        for channel_id, times in (self.indexed or self.parsed).items():
            channel = self.channels.get(channel_id)
            topic = channel.topic if channel else f"channel {channel_id}"
            topics.setdefault(topic, _Times()).merge(times)
        listed = "; ".join(f"{topic}: {times}" for topic, times in sorted(topics.items()))
        rest = " and the rest of it, whose records do not parse," if self.unparsed and not self.indexed else ""
        return BagError(f"{file}: the chunk at byte {self.position} is damaged: {self.problem}; its "
                        f"{sum(times.count for times in topics.values())} messages{rest} are left out as damaged"
                        + (f": {listed}" if listed else ""))


class _McapFile:
    """One MCAP file read sequentially, record by record, without its index (which a file cut short does
    not have). Damage within a record whose length is intact is reported and reading goes on with the
    next record: a chunk failing its CRC is left out with the list of its messages. Anything else (the
    file cut short, a record running past the end) ends the file with the error `unreadable` names."""

    def __init__(self, file: Path, stream: BinaryIO) -> None:
        self.file, self.stream = file, stream
        self.size = file.stat().st_size
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, _Channel] = {}
        self.count = 0  # messages read
        self.unchunked = 0  # of them outside chunks, which only the data section's CRC covers
        self.damaged_chunks = 0
        self.orphans: Counter[int] = Counter()  # messages on channels whose Channel record was lost
        self.not_cdr: Counter[int] = Counter()  # messages on channels in another encoding

    def unreadable(self, position: int, reason: str) -> BagError:
        return BagError(f"{self.file}: unreadable from byte {position} of {self.size} on, after {self.count} "
                        f"messages ({reason})")

    def messages(self) -> Iterator[BagMessage | BagError]:
        summary_problem = self._read_summary()
        try:
            crc_problem = yield from self._data_section()
        except (BagError, OSError):
            yield from self._left_out()
            raise
        yield from self._left_out()
        if crc_problem:
            yield crc_problem
        if summary_problem:
            yield BagError(f"{self.file}: {summary_problem}; the data section is whole: all {self.count} messages read")

    def _left_out(self) -> Iterator[BagError]:
        """Messages skipped as they were met: on channels whose Channel record was lost, or not in cdr."""
        if self.orphans:
            yield BagError(f"{self.file}: {sum(self.orphans.values())} messages on channel(s) "
                           f"{', '.join(map(str, sorted(self.orphans)))} are left out: their Channel record was in a "
                           "damaged chunk and the summary does not have it")
        if self.not_cdr:
            topics: Counter[tuple[str, str]] = Counter()
            for channel_id, count in self.not_cdr.items():
                topics[self.channels[channel_id].topic, self.channels[channel_id].encoding] += count
            listed = "; ".join(f"{topic}: {count} ({encoding}, not cdr)"
                               for (topic, encoding), count in sorted(topics.items()))
            yield BagError(f"{self.file}: {sum(topics.values())} messages on channels in another encoding than cdr "
                           f"(the one this reader reads) are left out: {listed}")

    def _data_section(self) -> Generator[BagMessage | BagError, None, BagError | None]:
        """The messages of the data section, with its damage as it is met; returns the data section's CRC
        failure (None if it passes), which is left unsaid when a damaged chunk already explains it."""
        self.stream.seek(0)
        if self.stream.read(len(MAGIC)) != MAGIC:
            raise BagError(f"{self.file}: not an MCAP file (it does not start with the MCAP magic)")
        crc = zlib.crc32(MAGIC)  # of the data section, up to its DataEnd record
        damaged: _DamagedChunk | None = None  # the last chunk, while its MessageIndex records are read
        while True:
            position = self.stream.tell()
            head = self.stream.read(RECORD_HEAD.size)
            opcode, length = RECORD_HEAD.unpack(head) if len(head) == RECORD_HEAD.size else (-1, 0)
            available = self.size - position - RECORD_HEAD.size
            if damaged is not None and (opcode != Opcode.MESSAGE_INDEX or length > available):
                yield damaged.report(self.file)
                damaged = None
            if opcode < 0:
                raise self.unreadable(position, "cut short: the file ends before its data section does")
            if length > available:
                if opcode != Opcode.CHUNK:
                    raise self.unreadable(position, f"cut short or damaged: a record of {length} bytes with "
                                                    f"{available} left in the file")
                read = yield from self._cut_chunk(memoryview(self.stream.read(available)))
                raise self.unreadable(position, f"cut short inside the chunk there, {available} of its {length} "
                                                f"bytes left: its {read} messages before the cut read, the rest lost")
            body = memoryview(self.stream.read(length))
            if opcode == Opcode.DATA_END:
                break
            crc = zlib.crc32(body, zlib.crc32(head, crc))
            if opcode == Opcode.CHUNK:
                damaged = yield from self._chunk(position, body)
            elif opcode == Opcode.MESSAGE_INDEX:
                if damaged is not None:
                    damaged.add_index(body)
            else:
                try:
                    message = self._record(opcode, body, self.schemas, self.channels)
                except (struct.error, ValueError) as error:
                    yield BagError(f"{self.file}: the record at byte {position} (opcode {opcode:#04x}) is damaged "
                                   f"and left out ({error})")
                    continue
                if message is not None:
                    self.unchunked += 1
                    yield message
        if damaged is not None:
            yield damaged.report(self.file)
        (stored,) = struct.unpack_from("<I", body) if len(body) >= 4 else (0,)
        if not stored or stored == crc or self.damaged_chunks:
            return None
        unchecked = f", {self.unchunked} of them outside chunks (only this CRC covers those)" * bool(self.unchunked)
        return BagError(f"{self.file}: the data section fails its CRC (stored {stored:#010x}, computed "
                        f"{crc:#010x}): the damage is outside the chunks, which pass theirs; all {self.count} "
                        f"messages read{unchecked}")

    def _read_summary(self) -> str:
        """Check the footer and the summary section; keep the summary's channels (with their types from its
        schemas: they stand in for those of a damaged chunk). Returns what is wrong with them, '' if nothing."""
        footer_at = self.size - FOOTER.size - len(MAGIC)
        if footer_at < len(MAGIC):
            return "the summary section is cut short: the file is too short to end with a footer"
        self.stream.seek(footer_at)
        tail = self.stream.read(FOOTER.size + len(MAGIC))
        opcode, length, start, _, stored = FOOTER.unpack_from(tail)
        if opcode != Opcode.FOOTER or length != FOOTER.size - RECORD_HEAD.size or tail[FOOTER.size:] != MAGIC:
            return "the summary section is cut short or damaged: the file does not end with a footer and the MCAP magic"
        if start == 0:  # a file without a summary section
            return ""
        if not len(MAGIC) <= start <= footer_at:
            return f"the footer is damaged: it puts the summary section at byte {start}, outside the file"
        self.stream.seek(start)
        summary = memoryview(self.stream.read(footer_at - start))
        crc = zlib.crc32(tail[:FOOTER.size - 4], zlib.crc32(summary))
        if stored and stored != crc:
            return f"the summary fails its CRC (stored {stored:#010x}, computed {crc:#010x})"
        schemas: dict[int, str] = {}
        channels: dict[int, _Channel] = {}
        try:
            for opcode, body in _records(summary):
                if opcode in (Opcode.SCHEMA, Opcode.CHANNEL):  # (the summary holds no messages: others are not read)
                    self._record(opcode, body, schemas, channels)
        except (_Cut, struct.error, ValueError) as error:
            return f"the summary's records are damaged ({type(error).__name__}: {error})"
        self.channels.update(channels)
        return ""

    def _record(self, opcode: int, body: memoryview, schemas: dict[int, str],
                channels: dict[int, _Channel]) -> BagMessage | None:
        """A Schema or Channel record goes into `schemas` / `channels`; a Message is returned (unless its
        channel is lost or not cdr: then it is counted); other records (indexes, metadata, attachments) are
        not needed for reading in order."""
        if opcode == Opcode.SCHEMA:
            (schema_id,) = struct.unpack_from("<H", body)
            schemas[schema_id] = _string(body, 2)[0]
        elif opcode == Opcode.CHANNEL:
            channel_id, schema_id = struct.unpack_from("<HH", body)
            topic, at = _string(body, 4)
            channels[channel_id] = _Channel(topic, schemas.get(schema_id, ""), _string(body, at)[0])
        elif opcode == Opcode.MESSAGE:
            channel_id, _, log_time, _ = MESSAGE_HEAD.unpack_from(body)
            channel = channels.get(channel_id)
            if channel is None or channel.encoding != "cdr":
                (self.orphans if channel is None else self.not_cdr)[channel_id] += 1
                return None
            self.count += 1
            return BagMessage(channel.topic, channel.msgtype, log_time, bytes(body[MESSAGE_HEAD.size:]))
        return None

    def _chunk_data(self, body: memoryview, whole: bool = True) -> tuple[int, int, bytes, str]:
        """A Chunk record's uncompressed size and CRC, its records as far as they decode, and what went
        wrong ('' if nothing); a chunk that is not `whole` (the file ends inside it) may end anywhere."""
        _, _, size, crc = CHUNK_HEAD.unpack_from(body)
        compression, at = _string(body, CHUNK_HEAD.size)
        (length,) = struct.unpack_from("<Q", body, at)
        at += 8
        if whole and length != len(body) - at:
            return size, crc, b"", f"its records field claims {length} bytes, the record holds {len(body) - at}"
        records, problem = _decompress(compression, body[at:at + length], size)
        return size, crc, records, problem

    def _chunk(self, position: int, body: memoryview) -> Generator[BagMessage | BagError, None, _DamagedChunk | None]:
        """The messages of a whole chunk; one that fails its CRC (or does not decode) is left out, and
        returned to be reported with its messages."""
        try:
            size, crc, records, problem = self._chunk_data(body)
        except (struct.error, ValueError) as error:
            records, problem = b"", f"its header is unreadable ({error})"
        else:
            computed = zlib.crc32(records)
            if not problem and len(records) != size:
                problem = f"it decodes to {len(records)} bytes, its header says {size}"
            if not problem and crc and computed != crc:
                problem = f"it fails its CRC (stored {crc:#010x}, computed {computed:#010x})"
        if problem:
            self.damaged_chunks += 1
            return self._damaged(position, problem, records)
        before = self.count
        try:
            for opcode, record in _records(memoryview(records)):
                message = self._record(opcode, record, self.schemas, self.channels)
                if message is not None:
                    yield message
        except (_Cut, struct.error, ValueError) as error:  # a chunk written without a CRC
            self.damaged_chunks += 1
            yield BagError(f"{self.file}: the chunk at byte {position} is damaged: its records are unreadable after "
                           f"its first {self.count - before} messages ({type(error).__name__}); the rest of it is lost")
        return None

    def _damaged(self, position: int, problem: str, records: bytes) -> _DamagedChunk:
        """A damaged chunk with its messages as far as its records parse (its own Schema and Channel records
        name the topics not known yet)."""
        schemas = dict(self.schemas)
        damaged = _DamagedChunk(position, problem, dict(self.channels))
        try:
            for opcode, body in _records(memoryview(records)):
                if opcode == Opcode.MESSAGE:
                    channel_id, _, log_time, _ = MESSAGE_HEAD.unpack_from(body)
                    damaged.parsed.setdefault(channel_id, _Times()).add(log_time)
                else:
                    self._record(opcode, body, schemas, damaged.channels)
        except (_Cut, struct.error, ValueError):
            damaged.unparsed = True
        return damaged

    def _cut_chunk(self, body: memoryview) -> Generator[BagMessage, None, int]:
        """The messages of a chunk cut by the end of the file, up to the cut (no CRC to check them against,
        but nothing in them has changed); returns their count."""
        before = self.count
        try:
            for opcode, record in _records(memoryview(self._chunk_data(body, whole=False)[2])):
                message = self._record(opcode, record, self.schemas, self.channels)
                if message is not None:
                    yield message
        except (_Cut, struct.error, ValueError):
            pass  # the record the cut runs through
        return self.count - before


def _read_mcap(file: Path) -> Iterator[BagMessage | BagError]:
    with open(file, "rb") as stream:
        reader = _McapFile(file, stream)
        try:
            yield from reader.messages()
        except OSError as error:  # a failing disk
            raise reader.unreadable(stream.tell(), f"{type(error).__name__}: {error}") from error


def _sqlite_declared_size(file: Path) -> int:
    """The database size its header claims (page size x page count), 0 if the header is unreadable."""
    with open(file, "rb") as stream:
        header = stream.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
        return 0
    page_size = struct.unpack(">H", header[16:18])[0]
    return (65536 if page_size == 1 else page_size) * struct.unpack(">I", header[28:32])[0]


def _read_sqlite(file: Path) -> Iterator[BagMessage]:
    size, declared = file.stat().st_size, _sqlite_declared_size(file)
    if size >= declared:
        yield from _sqlite_rows(file, file)
        return
    # SQLite refuses a file shorter than its header says; padded with zeros to that size, it reads every
    # row up to the first missing page.
    problem = f"the file is cut short: {size} of {declared} bytes"
    with tempfile.TemporaryDirectory() as folder:
        padded = Path(folder) / file.name
        shutil.copyfile(file, padded)
        os.truncate(padded, declared)
        count = yield from _sqlite_rows(padded, file, problem)
    raise BagError(f"{file}: {problem}; {count} messages read")


def _sqlite_rows(path: Path, file: Path, problem: str = "") -> Generator[BagMessage, None, int]:
    count = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            topics = {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, name, type FROM topics")}
            # in insertion (recording) order: a scan of the table reads up to a damaged page, where
            # sorting by timestamp would have to read every row first
            for topic_id, timestamp, data in db.execute("SELECT topic_id, timestamp, data FROM messages ORDER BY id"):
                topic, msgtype = topics[topic_id]
                count += 1
                yield BagMessage(topic, msgtype, int(timestamp), bytes(data))
        finally:
            db.close()
    except (sqlite3.Error, KeyError) as error:
        raise BagError(f"{file}: unreadable from message row {count + 1} on "
                       f"({problem or type(error).__name__ + ': ' + str(error)})") from error
    return count
