"""The ROS-free core must run on a machine without ROS: importing any module of it pulls in no ROS module.

Every module under the core packages is found on disk and imported in a fresh interpreter, which then
lists what got loaded: a module that imports rclpy or a message package, directly or through another
module, puts it in sys.modules. Walking the files (not a hand-kept list) means a new module is checked
the day it is added.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from refine_perception.share import LANE_MODEL

PACKAGE = Path(__file__).resolve().parents[1] / "refine_perception"
# runtime/ is checked once it exists; the others must
CORE_PACKAGES = ("models", "lanes", "instances", "metrics", "runtime", "data", "training")
REQUIRED_PACKAGES = ("models", "lanes", "instances", "metrics", "data", "training")
# a few modules the walk must find, so it cannot pass by finding nothing
EXPECTED = ("refine_perception.lanes.pipeline", "refine_perception.instances.pipeline",
            "refine_perception.models.preprocess", "refine_perception.training.trainer")


def is_ros(module: str) -> bool:
    """rclpy and the rcl/rmw/rosidl layers under it, message and interface packages (sensor_msgs,
    refine_msgs, builtin_interfaces, rcl_interfaces, ...), and our own ROS side."""
    top = module.split(".")[0]
    return (top.startswith(("rcl", "rmw", "rosidl", "rosbag2", "tf2", "message_filters", "launch_ros"))
            or top.endswith(("_msgs", "_srvs", "_interfaces"))
            or module == "refine_perception.ros" or module.startswith("refine_perception.ros."))


def core_modules() -> list[str]:
    """Every module of the core packages present, packages included; `__main__` files are left out
    (importing one runs its program)."""
    names = []
    for package in CORE_PACKAGES:
        for path in sorted((PACKAGE / package).rglob("*.py")):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            if parts[-1] == "__main__" or "__pycache__" in parts:
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


PROBE = """
import importlib, json, sys
root = sys.argv[1]
report = {"ros": {}, "failed": {}, "elsewhere": []}
for name in json.loads(sys.stdin.read()):
    before = set(sys.modules)
    try:
        module = importlib.import_module(name)
    except Exception as error:
        report["failed"][name] = f"{type(error).__name__}: {error}"
        continue
    if not (getattr(module, "__file__", None) or root).startswith(root):
        report["elsewhere"].append(name)
    new = sorted(set(sys.modules) - before)
    if new:
        report["ros"][name] = new
report["loaded"] = sorted(sys.modules)
print(json.dumps(report))
"""


def test_the_core_imports_no_ros() -> None:
    modules = core_modules()
    for package in REQUIRED_PACKAGES:
        assert f"refine_perception.{package}" in modules, f"{package}/ has no __init__.py or was not found"
    assert set(EXPECTED) <= set(modules)
    result = subprocess.run([sys.executable, "-c", PROBE, str(PACKAGE)], input=json.dumps(modules),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["failed"] == {}
    assert report["elsewhere"] == []  # the working tree's modules, not an installed copy
    assert set(modules) <= set(report["loaded"])
    # name the module that first pulled each ROS module in, then check the whole interpreter
    culprits = {name: [m for m in new if is_ros(m)] for name, new in report["ros"].items()}
    assert {name: ros for name, ros in culprits.items() if ros} == {}
    assert [name for name in report["loaded"] if is_ros(name)] == []


ENGINES_PROBE = """
import argparse, json, sys
import refine_perception.runtime.prepare as prepare
from refine_perception.cli.engines import run_engines
from refine_perception.share import LANE_MODEL, config_dir, shipped_model
assert shipped_model(LANE_MODEL).is_file() and (config_dir() / "lanes.yaml").is_file()
prepare.onnx_file = lambda model, folder: (model.path, "0" * 16)  # the export itself is tested elsewhere
run_engines(argparse.Namespace(model=None, int8=False, tensorrt=None, select=False, backend="auto", precision="auto",
                               threads=0, int8_weight_bits=0, max_batch=1, device=None, cache_dir=None))
print(json.dumps(sorted(sys.modules)))
"""


def test_engines_and_the_shipped_models_are_found_without_ros() -> None:
    """`refine-perception engines` prepares a model's ONNX/int8 files on a machine without ROS running:
    finding the shipped model must not need rclpy or a message package."""
    result = subprocess.run([sys.executable, "-c", ENGINES_PROBE], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert f"{LANE_MODEL}: clrnet, ONNX" in result.stdout  # the default model, found
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert "refine_perception.cli.engines" in loaded
    assert [name for name in loaded if is_ros(name)] == []
