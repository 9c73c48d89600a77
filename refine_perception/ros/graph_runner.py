"""Runs nodes in one process, each on its own single-threaded executor thread: the node executables' main
and `refine-perception launch`, the stand-in for `ros2 launch` where ROS 2's launch system is missing."""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from refine_perception.graphs import plan
from refine_perception.ros.executables import NODE_CLASSES
from refine_perception.share import config_dir


class NodeStartError(RuntimeError):
    """A node could not start (bad parameter, missing file, ...); the message names the node."""


def node_class(executable: str) -> type:
    module, name = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module), name)


class _StopSignals:
    """SIGINT/SIGTERM only raise the `stop` flag, from before rclpy starts until it has shut down. rclpy's
    own handler would invalidate the context while an executor may be inside a wait, and Python's default
    would raise KeyboardInterrupt wherever the main thread is, so a second signal (`timeout`, an impatient
    Ctrl-C) would break off the shutdown half way and leave DDS threads running into the interpreter's
    exit (a traceback, or an abort). A signal after the first changes nothing: the shutdown is under way.
    A plain flag, not a threading.Event: the handler runs in the main thread between two bytecodes, maybe
    while it holds the Event's lock inside Event.wait, and Event.set would then wait for itself forever."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stop = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop = True

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_nodes(
    entries: Sequence[tuple[type, list[str] | None]],
    args: list[str] | None = None,
    duration_s: float | None = None,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """Create the nodes (each with its own ROS arguments, or the process's when None), spin each in
    its own thread until SIGINT/SIGTERM, `duration_s`, or `until(nodes)` is true, then close them
    cleanly. Returns the nodes, destroyed, so callers can read their final counters. A signal while
    the nodes are being created (a model loading) stops before the next one is made."""
    with _StopSignals() as signals:
        rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
        nodes: list[Any] = []
        spinners: list[tuple[SingleThreadedExecutor, threading.Thread]] = []
        try:
            for cls, ros_args in entries:
                if signals.stop:
                    break
                kwargs = {} if ros_args is None else {"cli_args": ros_args, "use_global_arguments": False}
                try:
                    node = cls(**kwargs)
                except Exception as error:  # noqa: BLE001 - reported as one line, not a traceback
                    raise NodeStartError(f"{cls.DEFAULT_NAME} cannot start: {error}") from error
                nodes.append(node)
            # One executor thread per node, so nodes never wait for each other. Not rclpy's
            # MultiThreadedExecutor: while its pool threads wait for the GIL it re-polls ready entities
            # in a busy loop: a core of CPU and late frames (benchmarks/bench_graph_runner.py).
            for node in nodes:
                executor = SingleThreadedExecutor()
                executor.add_node(node)
                thread = threading.Thread(target=executor.spin, name=f"executor:{node.node_name}", daemon=True)
                thread.start()
                spinners.append((executor, thread))
            deadline = None if duration_s is None else time.monotonic() + duration_s
            while not (signals.stop or (deadline is not None and time.monotonic() >= deadline)
                       or (until and until(nodes))):
                time.sleep(0.05)
        finally:
            # Node threads first (nothing publishes any more), then the executors (running callbacks
            # finish), then the nodes, then rclpy; the signal handlers stay ours until it is all down.
            for node in nodes:
                node.get_logger().info("shutting down")
                node.stop()
            for executor, thread in spinners:
                executor.shutdown()
                thread.join(timeout=5.0)
            for node in nodes:
                node.destroy_node()
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
