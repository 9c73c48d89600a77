"""The training package must run on a machine without ROS: importing it pulls in no ROS module."""

from __future__ import annotations

import json
import subprocess
import sys

from refine_perception.share import LANE_MODEL

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


ENGINES_PROBE = """
import argparse, json, sys
import refine_perception.lanes.backends as backends
from refine_perception.cli.engines import run_engines
from refine_perception.share import LANE_MODEL, config_dir, shipped_model
assert shipped_model(LANE_MODEL).is_file() and (config_dir() / "lanes.yaml").is_file()
backends.onnx_file = lambda model, cache_dir: (model, "0" * 16, None)  # the export itself is tested elsewhere
run_engines(argparse.Namespace(model=None, tensorrt=False, cache_dir=None))
print(json.dumps(sorted(sys.modules)))
"""


def test_engines_and_the_shipped_models_are_found_without_ros() -> None:
    """`refine-perception engines` prepares a model's ONNX/int8 files on a machine without ROS running:
    finding the shipped model must not need rclpy or a message package."""
    result = subprocess.run([sys.executable, "-c", ENGINES_PROBE], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert f"{LANE_MODEL}: ONNX" in result.stdout  # the default model, found
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert "refine_perception.cli.engines" in loaded
    assert [name for name in loaded if name.startswith(FORBIDDEN)] == []
