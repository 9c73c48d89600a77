"""refine_msgs over real DDS: messages published by one process arrive in another with every field intact."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from msg_samples import SAMPLES
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

HERE = Path(__file__).parent


@pytest.fixture()
def publisher_process():
    proc = subprocess.Popen([sys.executable, str(HERE / "publish_samples.py")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "published"
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def test_messages_cross_process_intact(publisher_process):
    rclpy.init()
    try:
        node = rclpy.create_node("sample_subscriber")
        # Subscribing after the publisher already sent also checks the latched (transient local) path
        # that ClassMap relies on.
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        received = {}
        for name, build in SAMPLES.items():
            node.create_subscription(type(build()), f"/sample/{name}", lambda m, n=name: received.setdefault(n, m), qos)
        deadline = time.monotonic() + 20
        while len(received) < len(SAMPLES) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert set(received) == set(SAMPLES), f"missing: {set(SAMPLES) - set(received)}"
        for name, build in SAMPLES.items():
            expected = build()
            assert received[name] == expected, name
        lanes = received["lanes"].lanes
        assert [lane.track_id for lane in lanes] == [-1, 0, 1]
        assert len(lanes[0].image_points) == 72
        instances = received["instances"].instances
        assert list(instances[3].mask.counts) == [10, 5, 100, 3, 64 * 48 - 118]
        assert instances[3].has_grasp and not instances[0].has_grasp
    finally:
        rclpy.try_shutdown()
