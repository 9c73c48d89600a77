"""Writing rosbag2 bags (MCAP by default, sqlite3 too) from rclpy messages.

Messages are serialised by rclpy, so a bag holds exactly the bytes a node would have sent over DDS;
each connection carries the type's full definition (from the rosbags type store), so `ros2 bag`,
rosbags, the mcap tools and Foxglove all decode it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

from rclpy.serialization import serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.writer import Connection

from refine_perception.bags.typestore import typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def type_name(msg_or_class: Any) -> str:
    """pkg/msg/Name of an rclpy message (class or instance)."""
    cls = msg_or_class if isinstance(msg_or_class, type) else type(msg_or_class)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


class BagWriter:
    """A rosbag2 folder being written; connections are opened on first use of a topic."""

    def __init__(self, path: str | Path, storage: str = "mcap", overwrite: bool = False) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path} exists (rosbag2 writes a new folder)")
            shutil.rmtree(self.path)
        self.storage = storage
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections: dict[str, Connection] = {}
        self.count = 0

    def write(self, topic: str, msg: Any, time_ns: int) -> None:
        self.write_raw(topic, type_name(msg), serialize_message(msg), time_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, time_ns: int) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise ValueError(f"topic {topic} is {connection.msgtype}, cannot also hold {msgtype}")
        self._writer.write(connection, int(time_ns), data)
        self.count += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
