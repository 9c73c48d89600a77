"""The training package must run on a machine without ROS: importing it pulls in no ROS module."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ("cli", "trainer", "heldout", "lane_data", "export")
FORBIDDEN = ("rclpy", "rosidl", "refine_msgs", "sensor_msgs", "refine_perception.ros")

PROBE = f"""
import importlib, json, sys
for name in {MODULES!r}:
    importlib.import_module("refine_perception.training." + name)
print(json.dumps(sorted(sys.modules)))
"""


def test_training_imports_no_ros() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert all(f"refine_perception.training.{name}" in loaded for name in MODULES)
    assert [name for name in loaded if name.startswith(FORBIDDEN)] == []
