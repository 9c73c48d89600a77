"""Runs nodes in one process on a multi-threaded executor: the node executables' main and
`refine-perception launch`, the stand-in for `ros2 launch` where ROS 2's launch system is missing."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from refine_perception.graphs import PACKAGE, plan

# Executable name (setup.py console script) -> node class; a test keeps it in step with setup.py.
NODE_CLASSES = {
    "camera_source": "refine_perception.ros.camera_source:CameraSource",
    "image_converter": "refine_perception.ros.image_converter:ImageConverter",
    "topic_monitor": "refine_perception.ros.topic_monitor:TopicMonitor",
}


def node_class(executable: str) -> type:
    module, name = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module), name)


def config_dir() -> Path:
    """config/ of the installed package (the same files launch files use)."""
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / "config"


def run_nodes(
    entries: Sequence[tuple[type, list[str] | None]],
    args: list[str] | None = None,
    duration_s: float | None = None,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """Create the nodes (each with its own ROS arguments, or the process's when None), spin them until
    SIGINT/SIGTERM, `duration_s`, or `until(nodes)` is true, then close them cleanly. Returns the
    nodes, closed, so callers can read their final counters."""
    rclpy.init(args=args if args is not None else sys.argv)
    nodes: list[Any] = []
    executor = MultiThreadedExecutor()
    try:
        for cls, ros_args in entries:
            kwargs = {} if ros_args is None else {"cli_args": ros_args, "use_global_arguments": False}
            node = cls(**kwargs)
            nodes.append(node)
            executor.add_node(node)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while rclpy.ok() and (deadline is None or time.monotonic() < deadline) and not (until and until(nodes)):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            node.get_logger().info("shutting down")
            executor.remove_node(node)
            node.close()
        executor.shutdown()
        rclpy.try_shutdown()
    return nodes


def run_graph(
    graph: str,
    values: dict[str, str],
    duration_s: float | None = None,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """Start a graph from graphs.GRAPHS in this process, as its launch file would."""
    plans = plan(graph, values, config_dir())
    return run_nodes(
        [(node_class(p.executable), p.ros_args()) for p in plans], args=[], duration_s=duration_s, until=until
    )
