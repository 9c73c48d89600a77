"""TuSimple lane accuracy with the semantics of the benchmark's `evaluate/lane.py` (LaneEval), plus the
F1 that CLRNet, GANet, CondLaneNet and others report next to it.

Per image, lanes are x values at the ground truth's `h_samples` (negative = no point); a prediction may
leave its `h_samples` out (the submission format), and one that states other rows is an error, since its
x values would be compared at rows they were not computed for:
- each ground-truth lane gets a tolerance of 20 px / cos(theta), theta = arctan of the slope of a least
  squares line x(y) through its points;
- the accuracy of a prediction for a ground-truth lane is the fraction of all rows where
  |x_pred - x_gt| < tolerance, missing points counting as x = -100 on either side (so rows where both
  are missing count as hits, rows where only one is missing as misses);
- each ground-truth lane keeps its best accuracy over all predictions (no one-to-one matching: one
  prediction can serve several lanes); below 0.85 it is a miss (FN), otherwise matched;
  FP = #predictions - #matched (negative if one prediction matches two lanes, as in LaneEval);
- with more than 4 ground-truth lanes, one miss is forgiven and the lowest accuracy is left out;
- image accuracy = sum of accuracies / max(min(4, #gt), 1), FP rate = FP / #predictions (0 without
  predictions), FN rate = FN / max(min(#gt, 4), 1);
- run_time > 200 ms or more than #gt + 2 predictions scores (accuracy 0, FP 0, FN 1).
Accuracy, FP and FN are means over the ground-truth images. F1 (not part of LaneEval) follows CLRNet's
`tusimple_metric.py`: TP = 1 - FP, precision = TP / (TP + FP), recall = TP / (TP + FN), from the mean
rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from refine_perception.data.formats.tusimple import TuSimpleRecord
from refine_perception.metrics.table import format_table

PIXEL_THRESHOLD = 20.0
POINT_THRESHOLD = 0.85
MAX_RUN_TIME_MS = 200.0
_ABSENT = -100.0  # what LaneEval substitutes for a missing point


def lane_angle(xs: np.ndarray, ys: np.ndarray) -> float:
    """arctan of the least-squares slope dx/dy over the points with x >= 0 (0 with fewer than 2)."""
    valid = xs >= 0
    if np.count_nonzero(valid) < 2:
        return 0.0
    x, y = xs[valid], ys[valid].astype(np.float64)
    dy = y - y.mean()
    return float(np.arctan(np.dot(dy, x - x.mean()) / np.dot(dy, dy)))


def image_scores(
    pred: np.ndarray, gt: np.ndarray, h_samples: np.ndarray, run_time: float = 0.0
) -> tuple[float, float, float]:
    """(accuracy, FP rate, FN rate) of one image; `pred` (P, H) and `gt` (G, H) are x per h_sample."""
    n_pred, n_gt = len(pred), len(gt)
    if run_time > MAX_RUN_TIME_MS or n_gt + 2 < n_pred:
        return 0.0, 0.0, 1.0
    if n_gt == 0:
        return 0.0, (1.0 if n_pred else 0.0), 0.0
    tolerance = PIXEL_THRESHOLD / np.cos([lane_angle(lane, h_samples) for lane in gt])
    if n_pred:
        p = np.where(pred >= 0, pred, _ABSENT)[None, :, :]
        g = np.where(gt >= 0, gt, _ABSENT)[:, None, :]
        hits = np.abs(p - g) < tolerance[:, None, None]
        best = (hits.sum(axis=2) / gt.shape[1]).max(axis=1)
    else:
        best = np.zeros(n_gt)
    misses = int(np.count_nonzero(best < POINT_THRESHOLD))
    false_pos = n_pred - (n_gt - misses)
    total = float(best.sum())
    if n_gt > 4:
        misses = max(misses - 1, 0)
        total -= float(best.min())
    denominator = max(min(4, n_gt), 1)
    return total / denominator, (false_pos / n_pred if n_pred else 0.0), misses / denominator


@dataclass(frozen=True)
class TuSimpleResult:
    accuracy: float
    fp: float
    fn: float
    images: int

    @property
    def precision(self) -> float:
        return 1.0 - self.fp

    @property
    def recall(self) -> float:
        tp = 1.0 - self.fp
        return tp / (tp + self.fn) if tp + self.fn > 0 else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "Accuracy": self.accuracy,
            "FP": self.fp,
            "FN": self.fn,
            "F1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "images": self.images,
        }

    def table(self) -> str:
        values = [self.accuracy, self.f1, self.fp, self.fn]
        rows = [["images", "Acc", "F1", "FP", "FN"], [str(self.images), *(f"{100 * v:.2f}" for v in values)]]
        return "TuSimple (LaneEval)\n" + format_table(rows)

    def __str__(self) -> str:
        return self.table()


def tusimple_eval(preds: Sequence[TuSimpleRecord], gts: Sequence[TuSimpleRecord]) -> TuSimpleResult:
    """Score prediction records against ground-truth records, paired by `raw_file` like LaneEval (which
    also insists on one prediction per ground-truth image). A prediction without `run_time` counts as
    fast enough; one without `h_samples` is read at the ground truth's rows."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground-truth images; need one per image")
    by_file = {record.raw_file: record for record in gts}
    accuracy = fp = fn = 0.0
    for pred in preds:
        gt = by_file.get(pred.raw_file)
        if gt is None:
            raise ValueError(f"prediction for {pred.raw_file!r}, which is not in the ground truth")
        if gt.h_samples is None:
            raise ValueError(f"{gt.raw_file}: the ground truth has no h_samples")
        rows = len(gt.h_samples)
        pred_xs, gt_xs = _x_table(pred, rows, "prediction"), _x_table(gt, rows, "ground truth")
        if pred.h_samples is not None and not np.array_equal(pred.h_samples, gt.h_samples):
            raise ValueError(f"{pred.raw_file}: the prediction's h_samples ({_describe(pred.h_samples)}) differ "
                             f"from the ground truth's ({_describe(gt.h_samples)}); LaneEval reads x values at "
                             "the ground truth's rows, so write those rows or leave h_samples out")
        a, p, n = image_scores(pred_xs, gt_xs, gt.h_samples, pred.run_time or 0.0)
        accuracy, fp, fn = accuracy + a, fp + p, fn + n
    count = max(len(by_file), 1)
    return TuSimpleResult(accuracy / count, fp / count, fn / count, len(by_file))


def _describe(rows: np.ndarray) -> str:
    return f"{rows[0]:g}..{rows[-1]:g}, {len(rows)} rows"


def _x_table(record: TuSimpleRecord, rows: int, what: str) -> np.ndarray:
    xs = np.asarray(record.xs, dtype=np.float64)
    if xs.size == 0:
        return np.zeros((0, rows))
    if xs.ndim != 2 or xs.shape[1] != rows:
        raise ValueError(f"{record.raw_file}: {what} lanes have shape {xs.shape}, expected (lanes, {rows})")
    if not np.isfinite(xs).all():
        raise ValueError(f"{record.raw_file}: {what} x values contain NaN or infinity")
    return xs


def tusimple_eval_with_lanes(preds: Sequence[TuSimpleRecord],
                             gts: Sequence[TuSimpleRecord]) -> tuple[TuSimpleResult, dict[str, int]]:
    """LaneEval over the images whose ground truth has lanes, and the false lanes on the others.

    The TuSimple benchmark has no lane-less images and LaneEval gives one an accuracy of 0 whatever is
    predicted, so scoring crossroads or empty roads with it only caps the accuracy at the share of
    images with lanes; their predicted lanes are counted instead. Pairs are matched by position."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground-truth images; need one per image")
    with_lanes = [k for k, gt in enumerate(gts) if len(gt.xs)]
    laneless = [pred for pred, gt in zip(preds, gts) if not len(gt.xs)]
    result = tusimple_eval([preds[k] for k in with_lanes], [gts[k] for k in with_lanes])
    return result, {"images": len(laneless), "false_lanes": sum(len(pred.xs) for pred in laneless),
                    "images_with_false_lanes": sum(1 for pred in laneless if len(pred.xs))}
