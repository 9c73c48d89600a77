"""The node executables' entry points (setup.py console_scripts), kept free of heavy imports.

A node's module pulls in rclpy, torch, OpenCV and onnxruntime: seconds of imports during which Python's
default SIGINT handler would end the process with a KeyboardInterrupt traceback (`timeout` or a Ctrl-C
right after the start). Here SIGINT and SIGTERM end it quietly with the shell's usual status until the
node's own handling (graph_runner's run_nodes) takes over.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

NODES = ("camera_source", "image_converter", "topic_monitor", "lane_detector", "lane_scorer", "bag_player",
         "instance_segmenter")


def _quiet_exit(signum: int, frame: Any) -> None:
    sys.exit(128 + signum)


def run(node: str) -> int:
    """Import the node's module with quiet signals, then run its main()."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _quiet_exit)
    main: Callable[[], int] = importlib.import_module(f"refine_perception.ros.{node}").main
    return main()


globals().update({name: partial(run, name) for name in NODES})
