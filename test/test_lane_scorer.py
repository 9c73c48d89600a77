"""lane_scorer's arithmetic on LaneArrays built from the generator's exact lanes (no DDS needed: the
node is exercised over DDS by the demo test in test_cli.py)."""

from __future__ import annotations

import copy

import pytest
import rclpy
from std_msgs.msg import Header

from refine_perception.data.synthetic.road import drive
from refine_perception.ros.lane_messages import ground_truth_lanes
from refine_perception.ros.lane_scorer import LaneScorer


@pytest.fixture()
def scorer():
    rclpy.init(args=[])
    node = LaneScorer(cli_args=["--ros-args"], use_global_arguments=False)
    yield node
    node.close()
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def truths():
    arrays = []
    for k, frame in enumerate(drive(5, 4, width=820, height=295)):
        header = Header(frame_id="camera")
        header.stamp.sec = 100 + k
        arrays.append(ground_truth_lanes(header, frame, "base_footprint"))
    return arrays


def test_perfect_predictions_pair_by_stamp_and_score_one(scorer, truths):
    for truth in truths:
        scorer._add("truth", truth)
    for truth in reversed(truths[1:]):  # out of order, one missing
        scorer._add("pred", copy.deepcopy(truth))
    figures = scorer.scores()
    assert figures["frames_scored"] == 3
    assert figures["F1@50"] == figures["F1@75"] == 1.0 and figures["type_accuracy"] == 1.0
    assert figures["id_switches"] == 0
    assert figures["unpaired"] == {"pred": 0, "truth": 1}


def test_id_switches_and_missed_lanes_are_counted(scorer, truths):
    for k, truth in enumerate(truths):
        pred = copy.deepcopy(truth)
        if k == 2:
            pred.lanes[0].track_id += 100  # one lane changes id once
        if k == 3:
            pred.lanes = pred.lanes[:-1]  # another lane missed
        scorer._add("pred", pred)
        scorer._add("truth", truth)
    figures = scorer.scores()
    assert figures["id_switches"] == 2  # away and back
    assert figures["F1@50"] < 1.0
