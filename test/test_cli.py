"""The refine-perception command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

CLI = [str(Path(sys.prefix) / "lib" / "refine_perception" / "refine-perception")]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [[], ["launch"], ["demo"]])
def test_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0 and "usage: refine-perception" in result.stdout


def test_launch_lists_graphs_and_arguments():
    listing = run("launch")
    assert listing.returncode == 0 and listing.stdout.startswith("camera")
    args = run("launch", "camera", "--show-args")
    assert "rate_hz:=" in args.stdout and "camera_source_params_file:=" in args.stdout
    bad = run("launch", "camera", "rate_hz=5")
    assert bad.returncode == 2 and "expected name:=value" in bad.stderr
    unknown = run("launch", "camera", "frobnicate:=1")
    assert unknown.returncode == 2 and "has no argument 'frobnicate'" in unknown.stderr


def test_demo_json_accounts_for_every_frame(tmp_path):
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), 40 * i, np.uint8))
    result = run("demo", "--frames", "12", "--rate", "30", "--source", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["camera_source"]["processed"] == 12
    converter = figures["image_converter"]
    assert converter["received"] == converter["processed"] + converter["dropped"]
    assert converter["processed"] >= 10 and "dropped_malformed" not in converter
    topics = figures["topic_monitor"]["topics"]
    assert topics["/camera/image"]["type"] == "sensor_msgs/msg/Image"
    assert topics["/camera/image_raw/compressed"]["messages"] > 0


FIXTURES = Path(__file__).parent / "fixtures" / "lanes"


def test_eval_culane_scores_ground_truth_against_itself(tmp_path):
    root = FIXTURES / "culane"
    out = tmp_path / "culane.json"
    result = run("eval", "culane", "--gt", str(root), "--pred", str(root), "--json", "--out", str(out),
                 "--workers", "1")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures == json.loads(out.read_text())
    assert figures["mode"] == "official"
    everything = figures["categories"]["all"]
    assert everything["images"] == 3 and everything["mF1"] == 1.0
    assert everything["per_threshold"][0] == {
        "iou": 0.5, "TP": 6, "FP": 0, "FN": 0, "precision": 1.0, "recall": 1.0, "F1": 1.0
    }


def test_eval_culane_empty_predictions_count_as_misses(tmp_path):
    result = run("eval", "culane", "--gt", str(FIXTURES / "culane"), "--pred", str(tmp_path), "--json")
    everything = json.loads(result.stdout)["categories"]["all"]
    assert everything["per_threshold"][0]["TP"] == 0 and everything["per_threshold"][0]["FN"] == 6


def test_eval_tusimple_and_a_clear_error_for_broken_files():
    result = run("eval", "tusimple", "--gt", str(FIXTURES / "tusimple" / "label_data.json"),
                 "--pred", str(FIXTURES / "tusimple" / "predictions.json"), "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) >= {"Accuracy", "FP", "FN", "F1"}
    broken = run("eval", "tusimple", "--gt", str(FIXTURES / "tusimple" / "broken_label.json"),
                 "--pred", str(FIXTURES / "tusimple" / "predictions.json"))
    assert broken.returncode == 2 and "broken_label.json:" in broken.stderr
