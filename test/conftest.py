"""Test set-up: every test session talks DDS on its own domain, on this host only, so parallel runs
(and other sessions on the machine) never see each other's topics."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import pytest

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 200)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


@pytest.fixture()
def ros():
    """rclpy in this process with one executor: `add` nodes, `probe()` makes a plain node for test
    publishers and subscribers, `spin_until(condition)` spins until it holds or times out."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=[])
    executor = SingleThreadedExecutor()
    nodes = []

    class Ros:
        def add(self, node):
            nodes.append(node)
            executor.add_node(node)
            return node

        def probe(self, name: str = "probe"):
            return self.add(rclpy.create_node(name))

        def spin_until(self, condition: Callable[[], bool], timeout: float = 15.0) -> bool:
            deadline = time.monotonic() + timeout
            while not condition() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            return condition()

    yield Ros()
    for node in nodes:
        executor.remove_node(node)
        (node.close if hasattr(node, "close") else node.destroy_node)()
    executor.shutdown()
    rclpy.try_shutdown()
