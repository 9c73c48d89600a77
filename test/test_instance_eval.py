"""Instance scoring: the truth of rendered scenes scores perfectly against itself, and missing frames,
shifted masks and misplaced grasps cost what they should."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from refine_perception.data.synthetic.sticks import SticksScene, render_sticks
from refine_perception.evaluation.instances import score_instance_frames
from refine_perception.instances.result import InstanceResult
from refine_perception.instances.sticks_truth import scene_truth, stick_grasp

SEEDS = (1, 2, 3)
RECALL_POINTS = np.linspace(0, 1, 101)  # COCOeval's


@pytest.fixture(scope="module")
def scenes() -> list[SticksScene]:
    return [render_sticks(seed, 160, 120) for seed in SEEDS]


@pytest.fixture(scope="module")
def truth(scenes) -> list[list[InstanceResult]]:
    return [scene_truth(s) for s in scenes]


def shifted(mask: np.ndarray, dx: int) -> np.ndarray:
    out = np.zeros_like(mask)
    out[:, dx:] = mask[:, :-dx]
    return out


def union(frame: list[InstanceResult] | None, shape: tuple[int, int]) -> np.ndarray:
    return np.any([r.mask for r in frame], axis=0) if frame else np.zeros(shape, bool)


def table_and_stick_iou(truth: list[list[InstanceResult]], preds: list[list[InstanceResult] | None]) -> list[float]:
    shape = truth[0][0].mask.shape
    gt = np.stack([union(frame, shape) for frame in truth])
    pr = np.stack([union(frame, shape) for frame in preds])
    return [np.count_nonzero(g & p) / np.count_nonzero(g | p) for g, p in ((~gt, ~pr), (gt, pr))]


def coco_ap_at(recall: float) -> float:
    """COCO AP of a ranking whose first detections are right up to `recall` and the rest wrong."""
    return float(np.mean(RECALL_POINTS <= recall)) if recall > 0 else 0.0


def test_truth_scores_perfectly_against_itself(scenes, truth) -> None:
    scores = score_instance_frames(truth, truth)
    figures = scores.to_dict()
    json.dumps(figures, allow_nan=False)
    for key in ("mask_AP", "mask_AP50", "mask_AP75", "boundary_F", "mIoU", "grasp_success_rate",
                "confident_grasp_success_rate"):
        assert figures[key] == pytest.approx(1.0), key
    assert figures["frames"] == 3 and figures["frames_without_output"] == 0
    assert scores.grasp_frames == 3 and scores.confident_grasps == sum(s.free.sum() for s in scenes)
    assert scores.boundary_tolerance_px == 1  # ceil(0.00088 x 200)
    assert all(f.errors == 0 and f.tp == len(t) for f, t in zip(scores.per_frame, truth))


def test_a_frame_without_output_costs_its_sticks(truth) -> None:
    preds = [truth[0], None, truth[2]]
    scores = score_instance_frames(truth, preds)
    recall = (len(truth[0]) + len(truth[2])) / sum(map(len, truth))
    assert scores.mask_ap.summary["AP"] == pytest.approx(coco_ap_at(recall))
    assert scores.frames_without_output == 1
    assert scores.boundary_f == pytest.approx(2 / 3)  # the empty frame: recall 0, F 0
    assert scores.grasp_success_rate == pytest.approx(2 / 3)
    assert scores.semantic.iou().tolist() == pytest.approx(table_and_stick_iou(truth, preds))
    worst = max(scores.per_frame, key=lambda f: f.errors)
    assert worst.index == 1 and worst.errors == len(truth[1]) + 1 and worst.grasp_success is False


def test_shifted_masks_score_by_their_overlap(truth) -> None:
    """Each prediction is its truth moved one pixel right, scored by its IoU: at every COCO threshold t the
    predictions with IoU >= t come first, so precision is 1 up to the recall they reach."""
    preds, ious = [], []
    for frame in truth:
        moved = []
        for r in frame:
            mask = shifted(r.mask, 1)
            iou = np.count_nonzero(mask & r.mask) / np.count_nonzero(mask | r.mask)
            moved.append(dataclasses.replace(r, mask=mask, score=iou))
            ious.append(iou)
        preds.append(moved)
    ious = np.array(ious)
    expected = [coco_ap_at(np.mean(ious >= t)) for t in np.linspace(0.5, 0.95, 10)]
    scores = score_instance_frames(truth, preds, score_threshold=0.0)
    assert scores.mask_ap.summary["AP"] == pytest.approx(np.mean(expected))
    assert scores.mask_ap.summary["AP50"] == pytest.approx(expected[0])
    assert scores.boundary_f == 1.0  # one pixel: within the tolerance
    assert scores.semantic.iou().tolist() == pytest.approx(table_and_stick_iou(truth, preds))
    assert scores.grasp_success_rate == 1.0  # the grasps did not move

    two = [[dataclasses.replace(r, mask=shifted(r.mask, 2)) for r in frame] for frame in truth]
    assert score_instance_frames(truth, two).boundary_f < 0.9
    assert score_instance_frames(truth, two, boundary_tolerance_px=2).boundary_f == 1.0


def rotated(vector: tuple[float, float, float], degrees: float) -> tuple[float, float, float]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return (c * vector[0] - s * vector[1], s * vector[0] + c * vector[1], vector[2])


def test_grasp_rule(scenes, truth) -> None:
    scene, frame = scenes[0], truth[0]
    free = next(k for k in range(len(scene.sticks)) if scene.free[k])
    covered = next(k for k in range(len(scene.sticks)) if not scene.free[k])
    ideal = stick_grasp(scene, free)
    stick = scene.sticks[free]
    a, b = stick.ends()
    across = np.array(ideal.closing[:2])

    def outcome(**change: object) -> bool | None:
        grasp = dataclasses.replace(ideal, **change)
        pred = [dataclasses.replace(frame[0], grasp=grasp)]
        return score_instance_frames([frame], [pred]).per_frame[0].grasp_success

    assert outcome() is True
    assert outcome(position=(*(b + 0.9 * stick.radius * across), 0.3)) is True  # at an end, off the axis
    assert outcome(position=(*(b + 1.1 * stick.radius * across), 0.3)) is False
    beyond = b + (b - a) / np.linalg.norm(b - a) * 1.1 * stick.radius
    assert outcome(position=(*beyond, 0.3)) is False
    assert outcome(closing=rotated(ideal.closing, 19)) is True
    assert outcome(closing=rotated(ideal.closing, 21)) is False
    # the best grasp decides the frame; every confident grasp counts in the confident rate
    on_covered = dataclasses.replace(stick_grasp(scene, covered), score=0.9)
    good = dataclasses.replace(ideal, score=0.8)
    preds = [[dataclasses.replace(frame[0], grasp=on_covered), dataclasses.replace(frame[1], grasp=good)]]
    scores = score_instance_frames([frame], preds)
    assert scores.grasp_success_rate == 0.0
    assert (scores.confident_grasps, scores.confident_success_rate) == (2, 0.5)
    no_grasp = score_instance_frames([frame], [[dataclasses.replace(r, grasp=None) for r in frame]])
    assert no_grasp.grasp_success_rate == 0.0 and no_grasp.confident_success_rate is None


def test_bad_input_is_a_clear_error(truth) -> None:
    with pytest.raises(ValueError, match="3 ground-truth frames but 2"):
        score_instance_frames(truth, truth[:2])
    with pytest.raises(ValueError, match="no frames"):
        score_instance_frames([], [])
    small = [[dataclasses.replace(truth[1][0], mask=truth[1][0].mask[:60])]]
    with pytest.raises(ValueError, match="frame 1: prediction 0: mask must be bool 120x160"):
        score_instance_frames(truth[:2], [truth[0], small[0]])
    boxless = [[dataclasses.replace(r, box=None) for r in truth[0]]]
    with pytest.raises(ValueError, match="needs its box"):
        score_instance_frames(boxless, [truth[0]])
