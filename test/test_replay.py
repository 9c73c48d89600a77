"""Replay evaluation end to end, as a user runs it: dataset -> bag -> the lane detector over DDS (lossless
and realtime) or offline -> figures and report; lossless replay equals offline exactly."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from replay_checks import CLI, TIMING_KEYS, assert_bad_frame_scored_as_missing, figures, run

from refine_perception.bags.reader import BagReader


def lanes_by_stamp(result_bag: Path) -> dict[tuple[int, int], object]:
    """Decoded: the serialiser leaves alignment padding uninitialised, so equal messages can differ in bytes."""
    from refine_perception.bags.frames import cdr_stamp

    return {cdr_stamp(m.data): m.decode() for m in BagReader(result_bag).messages({"/lanes"})}


@pytest.fixture(scope="module")
def dataset_bag(tmp_path_factory) -> Path:
    """Six CULane-layout scenes written by the data generator, as a sqlite3 bag of raw images."""
    root = tmp_path_factory.mktemp("data")
    run("data", "generate", "lanes", "--out", str(root), "--num", "6", "--seed", "11", "--split", "test")
    bag = root / "bag"
    run("bag", "write", str(bag), "--culane", str(root / "culane"), "--list", "list/test.txt",
        "--storage", "sqlite3", "--transport", "raw")
    return bag


def test_lossless_replay_over_dds_equals_offline(dataset_bag, tmp_path):
    run("replay", str(dataset_bag), "--out", str(tmp_path / "offline"), "--mode", "offline")
    run("replay", str(dataset_bag), "--out", str(tmp_path / "lossless"), "--mode", "lossless")
    offline, lossless = figures(tmp_path / "offline"), figures(tmp_path / "lossless")
    assert lossless["mode"] == "lossless" and offline["mode"] == "offline"
    assert lossless["frames_scored"] == 6 and lossless["dropped"] == 0 and lossless["outputs"] == 6
    assert lossless["per_category"], "the generator's categories are tagged and reported"
    assert {k: v for k, v in lossless.items() if k not in TIMING_KEYS} == \
        {k: v for k, v in offline.items() if k not in TIMING_KEYS}
    # not only the figures: the node published exactly the LaneArrays the offline pipeline computed
    assert lanes_by_stamp(tmp_path / "lossless" / "results") == lanes_by_stamp(tmp_path / "offline" / "results")
    # every output is recorded, not only what is scored
    recorded = BagReader(tmp_path / "lossless" / "results").topics()
    assert recorded == {"/lanes": "refine_msgs/msg/LaneArray", "/lane_markers": "visualization_msgs/msg/MarkerArray",
                        "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}
    assert lossless["F1@50"] > 0.5 and lossless["latency_ms"]["p50"] > 0
    report = (tmp_path / "lossless" / "report.md").read_text()
    assert "CULane F1@50" in report and "Per category" in report and "latency.png" in report
    for png in ("precision_recall.png", "latency.png", "per_category_f1.png"):
        assert (tmp_path / "lossless" / png).stat().st_size > 1000


def test_realtime_replay_counts_drops_and_results_can_be_rescored(tmp_path):
    bag = tmp_path / "drive"
    run("bag", "write", str(bag), "--source", "synthetic:drive?seed=6&frames=12")
    assert (bag / "lane_detector.yaml").is_file()  # the drive's camera mounting for the detector
    # 12 frames of a 10 Hz drive played 5x faster than recorded: far more than the detector can take
    out = run("replay", str(bag), "--out", str(tmp_path / "rt"), "--mode", "realtime", "--rate", "5").stdout
    result = figures(tmp_path / "rt")
    assert result["frames_scored"] == 12 and result["dropped"] > 0
    assert result["outputs"] + result["dropped"] == 12
    assert "without output" in out and "latency p50" in out
    # the recorded lanes scored again, alone (what a `ros2 bag record` of /lanes gives)
    run("replay", str(bag), "--out", str(tmp_path / "again"), "--results", str(tmp_path / "rt" / "results"))
    again = figures(tmp_path / "again")
    assert {k: again[k] for k in ("F1@50", "F1@75", "dropped", "type_accuracy")} == \
        {k: result[k] for k in ("F1@50", "F1@75", "dropped", "type_accuracy")}


def test_truncated_bag_is_scored_as_far_as_readable(tmp_path):
    import os

    bag = tmp_path / "drive"
    run("bag", "write", str(bag), "--source", "synthetic:drive?seed=6&frames=16")
    (file,) = bag.glob("*.mcap")
    os.truncate(file, int(file.stat().st_size * 0.7))
    info = subprocess.run([*CLI, "bag", "info", str(bag)], capture_output=True, text=True, timeout=60)
    assert info.returncode == 1 and f"{file}: unreadable from byte" in info.stdout
    out = run("replay", str(bag), "--out", str(tmp_path / "rep"), "--mode", "offline").stdout
    result = figures(tmp_path / "rep")
    assert 0 < result["frames_scored"] < 16 and result["errors"] and "read error" in out
    assert "Read errors" in (tmp_path / "rep" / "report.md").read_text()


def test_replay_of_a_bag_without_ground_truth_is_a_clear_error(tmp_path):
    from refine_perception.bags.writer import BagWriter

    with BagWriter(tmp_path / "empty", "mcap") as writer:
        from sensor_msgs.msg import Image

        writer.write("/cam/image_raw", Image(height=1, width=1, encoding="bgr8", step=3, data=[0, 0, 0]), 5)
    result = subprocess.run([*CLI, "replay", str(tmp_path / "empty"), "--out", str(tmp_path / "r"), "--mode",
                             "offline"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no frame has ground truth" in result.stderr


def test_lossless_replay_of_a_bag_whose_camera_info_follows_the_image(tmp_path):
    """Robot bags often log a frame's CameraInfo just after its image: the player must not wait for the
    lanes before that CameraInfo is out (the detector needs both)."""
    from refine_perception.bags.writer import BagWriter

    drive = tmp_path / "drive"
    run("bag", "write", str(drive), "--source", "synthetic:drive?seed=6&frames=4")
    messages = list(BagReader(drive).messages())
    order = {"/camera/image_raw/compressed": 0, "/camera/camera_info": 1}
    with BagWriter(tmp_path / "robot", "mcap") as writer:
        for message in sorted(messages, key=lambda m: (m.time_ns, order.get(m.topic, 2))):
            writer.write_raw(message.topic, message.msgtype, message.data, message.time_ns)
    shutil.copy(drive / "lane_detector.yaml", tmp_path / "robot")
    run("replay", str(tmp_path / "robot"), "--out", str(tmp_path / "rep"), "--mode", "lossless")
    result = figures(tmp_path / "rep")
    timing = json.loads((tmp_path / "rep" / "results" / "timing.json").read_text())
    assert result["frames_scored"] == 4 and result["dropped"] == 0 and timing["timeouts"] == 0


def test_sticks_bag_through_the_instance_segmenter_lossless_equals_offline(tmp_path):
    import yaml
    from instance_checks import write_banded_model

    from refine_perception.bags.frames import cdr_stamp

    bag = tmp_path / "sticks"
    run("bag", "write", str(bag), "--source", "synthetic:sticks?seed=2&frames=6&width=320&height=240")
    model = write_banded_model(tmp_path / "banded.safetensors")
    params = tmp_path / "instances.yaml"
    params.write_text(yaml.safe_dump({"/**/instance_segmenter": {"ros__parameters": {"model": str(model)}}}))
    for mode in ("offline", "lossless"):
        run("replay", str(bag), "--out", str(tmp_path / mode), "--mode", mode, "--params", str(params))
    offline, lossless = figures(tmp_path / "offline"), figures(tmp_path / "lossless")
    assert lossless["task"] == "instances" and lossless["mode"] == "lossless"
    assert lossless["frames_scored"] == 6 and lossless["dropped"] == 0 and lossless["outputs"] == 6
    assert {k: v for k, v in lossless.items() if k not in TIMING_KEYS} == \
        {k: v for k, v in offline.items() if k not in TIMING_KEYS}

    def arrays(folder: Path) -> dict:
        return {cdr_stamp(m.data): m.decode() for m in BagReader(folder / "results").messages({"/instances"})}

    published = arrays(tmp_path / "lossless")
    assert published == arrays(tmp_path / "offline") and all(a.instances for a in published.values())
    assert BagReader(tmp_path / "lossless" / "results").topics() == {
        "/instances": "refine_msgs/msg/InstanceArray", "/instance_markers": "visualization_msgs/msg/MarkerArray",
        "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}
    # an untrained model's bands are not sticks: every frame is among the worst, drawn with its masks
    assert lossless["grasp_frames"] > 0 and lossless["grasp_success_rate"] is not None and lossless["mIoU"] < 0.9
    report = (tmp_path / "lossless" / "report.md").read_text()
    assert "mask AP" in report and "grasp success" in report and "latency.png" in report and "Worst frames" in report
    assert (tmp_path / "lossless" / "worst_frames.png").stat().st_size > 10000


def test_a_malformed_raw_image_is_listed_and_scored_as_a_frame_without_output(tmp_path):
    """A raw Image whose data is shorter than its step x height: the lane detector drops it as malformed."""
    from refine_perception.bags.lane_bags import drive_frames, write_lane_bag

    bag = tmp_path / "drive"
    write_lane_bag(bag, drive_frames("synthetic:drive?seed=6&frames=5"), transport="raw")

    def truncate(image):
        image.data = image.data[: len(image.data) // 2]
        return image

    assert_bad_frame_scored_as_missing(bag, 2, truncate, tmp_path)


@pytest.mark.parametrize("task", ["lanes", "instances", "street"])
def test_backend_override_reaches_every_node(tmp_path, task):
    """--backend sets the network backend of whichever node the bag needs, openvino included."""
    from refine_perception.cli.replay import _TASKS, node_params

    assert node_params(_TASKS[task], tmp_path, None, "openvino")["backend"] == "openvino"
    assert node_params(_TASKS[task], tmp_path, None, None)["backend"] == "auto"
