"""The node executables' entry points (setup.py console_scripts), kept free of heavy imports.

A node's module pulls in rclpy, torch, OpenCV and onnxruntime: seconds of imports during which Python's
default SIGINT handler would end the process with a KeyboardInterrupt traceback (`timeout` or a Ctrl-C
right after the start). Here SIGINT and SIGTERM end it quietly with the shell's usual status until the
node's own handling (graph_runner's run_nodes) takes over.
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

# executable -> the node class it runs; setup.py names each executable's entry point below
NODE_CLASSES = {
    "camera_source": "refine_perception.ros.camera_source:CameraSource",
    "image_converter": "refine_perception.ros.image_converter:ImageConverter",
    "topic_monitor": "refine_perception.ros.topic_monitor:TopicMonitor",
    "lane_detector": "refine_perception.ros.lane_detector:LaneDetector",
    "instance_segmenter": "refine_perception.ros.instance_segmenter:InstanceSegmenter",
    "street_segmenter": "refine_perception.ros.street_segmenter:StreetSegmenter",
    "lane_scorer": "refine_perception.ros.lane_scorer:LaneScorer",
    "bag_player": "refine_perception.ros.bag_player:BagPlayer",
}


def _quiet_exit(signum: int, frame: Any) -> None:
    # os._exit, not sys.exit: the signal may land while a C++ extension (torch's) runs Python code during
    # its import, where an exception aborts the process ("terminate called"); nothing needs cleaning up yet
    os._exit(128 + signum)


def run(executable: str) -> int:
    """Import the node's module with quiet signals, then run its main()."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _quiet_exit)
    module = NODE_CLASSES[executable].split(":")[0]
    main: Callable[[], int] = importlib.import_module(module).main
    return main()


globals().update({name: partial(run, name) for name in NODE_CLASSES})
