"""Lane figures of a sequence of frames: per frame the ground-truth LaneArray and the detector's
LaneArray for the same stamp (None where the detector published nothing: a dropped frame, whose lanes
all count as missed).

CULane F1@50/F1@75/mF1 with the official rules at the frames' own size (predictions sampled every 8 rows
from the crop line down, as the official writers do), per tagged category; the TuSimple rule (a lane is
right when 85 % of its points are within 20 px, sampled every 10 rows below the crop: TuSimple's own rows
at 1280x720); lane-type and colour accuracy over matched lanes; tracking id switches (a ground-truth
lane matched to a new detector id); precision and recall at IoU 0.5 as the score threshold rises. A
matched lane is one CULane's F1@50 counts as a true positive (`metrics.lane_matching`).
Works on rclpy and rosbags messages alike (only field access).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refine_perception.data.formats.tusimple import TuSimpleRecord
from refine_perception.metrics.culane import ROW_STEP as CULANE_ROW_STEP
from refine_perception.metrics.culane import CULaneResult, culane_f1, lane_ious
from refine_perception.metrics.lane_matching import AttributeTally, true_positive_pairs
from refine_perception.metrics.tusimple import TuSimpleResult, tusimple_eval_with_lanes
from refine_perception.models.clrnet.decode import sample_lane

TUSIMPLE_ROW_STEP = 10
UNANNOTATED = 0  # Lane.msg's TYPE_UNKNOWN and COLOR_UNKNOWN: the truth does not say
PR_THRESHOLDS = tuple(np.round(np.arange(0.40, 0.96, 0.05), 2))


def image_points(lane: Any) -> np.ndarray:
    return np.array([[p.x, p.y] for p in lane.image_points], dtype=np.float64).reshape(-1, 2)


@dataclass
class FrameScore:
    """One frame at IoU 0.5: true positives, false positives, false negatives."""

    index: int
    tp: int
    fp: int
    fn: int

    @property
    def errors(self) -> int:
        return self.fp + self.fn


@dataclass
class LaneScores:
    frames: int
    frames_without_output: int
    culane: CULaneResult
    tusimple: TuSimpleResult  # over the frames with lanes (see `tusimple_eval_with_lanes`)
    tusimple_laneless: dict[str, int] = field(default_factory=dict)  # frames without lanes, false lanes on them
    attributes: AttributeTally = field(default_factory=AttributeTally)  # lane type / colour over matched lanes
    id_switches: int = 0
    per_frame: list[FrameScore] = field(default_factory=list)
    pr_curve: list[tuple[float, float, float]] = field(default_factory=list)  # (threshold, precision, recall)

    @property
    def type_accuracy(self) -> float | None:
        return self.attributes.type_accuracy

    @property
    def color_accuracy(self) -> float | None:
        return self.attributes.color_accuracy

    def categories(self) -> list[str]:
        return [name for name in self.culane.images if name != "all"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "frames_without_output": self.frames_without_output,
            "F1@50": self.culane.f1(0.5),
            "F1@75": self.culane.f1(0.75),
            "mF1": self.culane.mf1(),
            "per_category": {name: {"frames": self.culane.images[name], "F1@50": self.culane.f1(0.5, name),
                                    "F1@75": self.culane.f1(0.75, name), "mF1": self.culane.mf1(name)}
                             for name in self.categories()},
            "tusimple": self.tusimple.to_dict(),
            "tusimple_laneless": self.tusimple_laneless,
            "type_accuracy": self.type_accuracy,
            "type_matched": self.attributes.type_total,
            "color_accuracy": self.color_accuracy,
            "id_switches": self.id_switches,
            "pr_curve": [{"threshold": t, "precision": p, "recall": r} for t, p, r in self.pr_curve],
        }


def _rows(height: int, cut_ratio: float, step: int) -> np.ndarray:
    return np.arange(round(cut_ratio * height), height, step)


def score_lane_frames(truths: Sequence[Any], preds: Sequence[Any | None], tags: Sequence[Sequence[str]] = (),
                      cut_ratio: float = 270 / 590, workers: int | None = 1) -> LaneScores:
    """Score frame k's `preds[k]` against `truths[k]`; `tags[k][0]`, when given, is frame k's category."""
    if len(truths) != len(preds):
        raise ValueError(f"{len(truths)} ground-truth frames but {len(preds)} prediction entries")
    if not truths:
        raise ValueError("no frames to score")
    width, height = int(truths[0].image_width), int(truths[0].image_height)
    culane_rows = _rows(height, cut_ratio, CULANE_ROW_STEP)
    tusimple_rows = _rows(height, cut_ratio, TUSIMPLE_ROW_STEP)
    sampled_preds: list[list[np.ndarray]] = []
    gts: list[list[np.ndarray]] = []
    tu_preds: list[TuSimpleRecord] = []
    tu_gts: list[TuSimpleRecord] = []
    pr_counts = np.zeros((len(PR_THRESHOLDS), 3), dtype=np.int64)  # tp, fp, fn per threshold
    tracks: dict[int, list[int]] = {}
    scores = LaneScores(len(truths), sum(p is None for p in preds), None, None)  # type: ignore[arg-type]
    for index, (truth, pred) in enumerate(zip(truths, preds)):
        if (int(truth.image_width), int(truth.image_height)) != (width, height):
            raise ValueError(f"frame {index} is {truth.image_width}x{truth.image_height}, the first {width}x{height}")
        gt_lanes = [image_points(lane) for lane in truth.lanes]
        pred_msgs = [] if pred is None else list(pred.lanes)
        raw = [image_points(lane) for lane in pred_msgs]
        lanes = [sample_lane(lane, culane_rows, width, height) if len(lane) >= 2 else lane for lane in raw]
        keep = [k for k, lane in enumerate(lanes) if len(lane) >= 2]
        lanes, pred_msgs = [lanes[k] for k in keep], [pred_msgs[k] for k in keep]
        sampled_preds.append(lanes)
        gts.append(gt_lanes)
        name = f"frame{index}"
        tu_preds.append(TuSimpleRecord.from_lanes(name, [sample_lane(lane, tusimple_rows, width, height)
                                                          for lane in raw if len(lane) >= 2],
                                                  tusimple_rows, image_width=width))
        tu_gts.append(TuSimpleRecord.from_lanes(name, gt_lanes, tusimple_rows, image_width=width))
        ious = (lane_ious(gt_lanes, lanes, image_size=(width, height)) if gt_lanes and lanes
                else np.zeros((len(gt_lanes), len(lanes))))
        lane_scores = np.array([lane.score for lane in pred_msgs])
        for t, threshold in enumerate(PR_THRESHOLDS):
            chosen = np.flatnonzero(lane_scores >= threshold) if len(lanes) else np.zeros(0, dtype=int)
            tp = len(true_positive_pairs(ious[:, chosen]))
            pr_counts[t] += (tp, len(chosen) - tp, len(gt_lanes) - tp)
        pairs = true_positive_pairs(ious)
        scores.attributes.add(pairs, [lane.type for lane in truth.lanes], [lane.color for lane in truth.lanes],
                              [lane.type for lane in pred_msgs], [lane.color for lane in pred_msgs], UNANNOTATED)
        for gt, k in pairs:
            if truth.lanes[gt].track_id >= 0:
                tracks.setdefault(int(truth.lanes[gt].track_id), []).append(int(pred_msgs[k].track_id))
        tp = len(pairs)
        scores.per_frame.append(FrameScore(index, tp, len(lanes) - tp, len(gt_lanes) - tp))
    categories = [tag[0] if tag else None for tag in tags] if tags else None
    if categories is not None and len(categories) != len(truths):
        raise ValueError(f"{len(categories)} tags for {len(truths)} frames")
    has_categories = categories is not None and any(c is not None for c in categories)
    scores.culane = culane_f1(sampled_preds, gts, categories=categories if has_categories else None,
                              image_size=(width, height), workers=workers)
    scores.tusimple, scores.tusimple_laneless = tusimple_eval_with_lanes(tu_preds, tu_gts)
    scores.id_switches = sum(int(np.count_nonzero(np.diff(ids))) for ids in tracks.values())
    for threshold, (tp, fp, fn) in zip(PR_THRESHOLDS, pr_counts):
        scores.pr_curve.append((float(threshold), tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0))
    return scores
