"""The node benchmarks' harness over real DDS: a node that cannot open its model ends the benchmark at once
with the node's own reason, instead of waiting out every frame."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import node_bench  # noqa: E402
from refine_msgs.msg import LaneArray  # noqa: E402
from refine_perception.data.synthetic.road import road_sample  # noqa: E402


@pytest.mark.slow
def test_a_node_without_its_model_ends_the_benchmark_with_its_reason(tmp_path):
    missing = tmp_path / "missing.safetensors"
    command = ["lane_detector", "--ros-args", "-p", f"model:={missing}", "-p", "use_camera_info:=false",
               "-r", "image_raw:=bench/image_raw", "-r", "lanes:=bench/results"]
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"gave no result: model {missing} unavailable"):
        node_bench.node_phases(command, node_bench._bgr8_messages([road_sample(7, 0).image]), LaneArray, 5, 1.0, 0)
    assert time.monotonic() - start < 50, "the harness waited out its timeouts instead of reading the node's status"
