"""launch_testing run of every launch file, for machines with a ROS 2 install (launch, launch_ros,
launch_testing are not installable from PyPI, so this module is skipped here; test_launch_files.py
checks the same launch files statically and test_graph_runner.py runs the same graphs in-process)."""

from __future__ import annotations

import pytest

launch_testing = pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import time  # noqa: E402
import unittest  # noqa: E402
from pathlib import Path  # noqa: E402

import rclpy  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from launch import LaunchDescription  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / "launch" / "camera.launch.py"


@pytest.mark.launch_test
def generate_test_description():
    camera = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)), launch_arguments={"rate_hz": "20.0"}.items()
    )
    return LaunchDescription([camera, launch_testing.actions.ReadyToTest()])


class TestCameraGraph(unittest.TestCase):
    def test_converted_images_arrive(self):
        rclpy.init()
        try:
            node = rclpy.create_node("launch_probe")
            images = []
            node.create_subscription(Image, "/camera/image", images.append, 10)
            deadline = time.monotonic() + 30
            while len(images) < 5 and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.1)
            self.assertGreaterEqual(len(images), 5)
            self.assertEqual(images[0].header.frame_id, "camera_optical_frame")
            self.assertEqual(images[0].encoding, "bgr8")
        finally:
            rclpy.try_shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
