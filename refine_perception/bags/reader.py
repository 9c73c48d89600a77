"""Reading rosbag2 bags from any recorder: a rosbag2 folder (metadata.yaml plus .mcap or .db3 files) or
a single .mcap / .db3 file.

Reading is sequential and tolerant: MCAP is read record by record (not through its index, which a bag
cut short by a crash or a full disk does not have) and sqlite3 row by row, so a damaged bag yields every
message before the damage and then records a `BagError` naming the file and the position (byte offset
or row), instead of yielding nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rclpy.serialization import deserialize_message

from refine_perception.ros.messages import import_message_type

log = logging.getLogger(__name__)


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
        self.errors = []
        for file in self.files:
            read = _read_mcap if _is_mcap(file) else _read_sqlite
            try:
                for message in read(file):
                    if topics is None or message.topic in topics:
                        yield message
            except BagError as error:
                log.error("%s", error)
                self.errors.append(error)

    def topics(self) -> dict[str, str]:
        """topic -> type of every message in the bag (a full read)."""
        found: dict[str, str] = {}
        for message in self.messages():
            found.setdefault(message.topic, message.msgtype)
        return found


def _is_mcap(file: Path) -> bool:
    if file.suffix == ".mcap":
        return True
    with open(file, "rb") as stream:
        return stream.read(5) == b"\x89MCAP"


def _read_mcap(file: Path) -> Iterator[BagMessage]:
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    count = 0
    with open(file, "rb") as stream:
        reader = StreamReader(stream, validate_crcs=True)
        position = 0  # where the record being read starts
        try:
            for record in reader.records:
                if isinstance(record, Schema):
                    schemas[record.id] = record.name
                elif isinstance(record, Channel):
                    if record.message_encoding != "cdr":
                        raise BagError(f"{file}: channel {record.topic} is {record.message_encoding}, not cdr")
                    channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
                elif isinstance(record, Message):
                    topic, msgtype = channels[record.channel_id]
                    count += 1
                    yield BagMessage(topic, msgtype, record.log_time, bytes(record.data))
                position = stream.tell()
        except (McapError, EOFError, ValueError, KeyError, OSError) as error:
            size = file.stat().st_size
            raise BagError(f"{file}: unreadable from byte {position} of {size} on, after {count} messages "
                           f"({type(error).__name__}{': ' + str(error) if str(error) else ''})") from error


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
