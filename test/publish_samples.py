"""Publisher half of test_msgs_dds: publishes every sample once, latched (transient local), and stays
alive until killed, so the subscriber in the test process receives them over real DDS."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

sys.path.insert(0, str(Path(__file__).parent))
from msg_samples import SAMPLES  # noqa: E402

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("sample_publisher")
    publishers = []
    for name, build in SAMPLES.items():
        msg = build()
        pub = node.create_publisher(type(msg), f"/sample/{name}", LATCHED)
        pub.publish(msg)
        publishers.append(pub)
    print("published", flush=True)
    deadline = time.monotonic() + 60
    while rclpy.ok() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)


if __name__ == "__main__":
    main()
