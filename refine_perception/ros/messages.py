"""Message types by name ("pkg/msg/Name"), for nodes whose topics' types are chosen by parameter."""

from __future__ import annotations

import importlib


def import_message_type(name: str) -> type:
    """The Python class of a ROS message type given as pkg/msg/Name (or pkg/Name)."""
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{name!r} is not a message type name like sensor_msgs/msg/Image")
    package, kind, type_name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, type_name)
    except (ImportError, AttributeError):
        raise ValueError(f"message type {name} is not installed (no {package}.{kind}.{type_name})") from None
