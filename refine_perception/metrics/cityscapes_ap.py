"""Cityscapes instance-level AP, equal to cityscapesscripts' `evalInstanceLevelSemanticLabeling`
(proven on random cases in test/test_seg_metrics.py), vectorised and in memory.

The official rules, all reproduced:
- ground truth is the `gtFine_instanceIds` map: ids >= 1000 are instances of class id // 1000, smaller
  ids are the class of the pixel, a region of an instance class with such an id is a *group* (e.g. a
  crowd of cars); void pixels are those whose id is a label with `ignoreInEval` (0-6, 9, 10, 14-16, 18,
  29, 30);
- evaluated classes: person, rider, car, truck, bus, train, motorcycle, bicycle; predictions of other
  classes and empty predictions are dropped;
- for each overlap threshold in 0.50:0.05:0.95 (numpy's arange values, strict `>`): a prediction matches
  a ground-truth instance of its class (id >= 1000, >= 100 px) when their IoU exceeds the threshold; a
  matched instance is a TP scored with its best prediction, each further matching prediction an FP with
  its own score, an unmatched instance a (hard) FN; a prediction that matches nothing is an FP unless
  the share of its pixels on void, on groups of its class or on instances of its class under 100 px
  (pixels on a small group count twice, as in the official tool) is at least the threshold, and a
  prediction whose IoU with a group or a small instance exceeds the threshold is neither TP nor FP;
- AP per (class, threshold): precision/recall at every distinct score, plus the point (R=0, P=1),
  integrated with the official step widths (half the recall difference of the two neighbours);
  0 if the class has ground truth but no prediction, NaN if it has no ground truth;
- class AP = mean over thresholds; AP = NaN-mean over classes and thresholds; AP50 likewise at 0.5.
Distance-based AP (AP50m, AP100m) needs stereo depth the benchmark does not ship for users; it is off
by default in the official tool and not computed here.
One case where the official tool crashes is defined here: a class with ground truth and predictions
whose predictions all fall on ignored regions (no TP, no FP) has AP 0.

Predictions in the official result format (`read_cityscapes_predictions`, `write_cityscapes_predictions`):
one txt per image with lines `<mask png relative to the txt> <label id> <score>`, any non-zero pixel of
the (grey-converted) PNG being the mask. Ids outside cityscapesscripts' table raise (the official tool
crashes); the project's lane-marking id 34 is plain non-void stuff, as it is after folding it into road.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from refine_perception.data.formats.cityscapes import ID_TO_LABEL, INSTANCE_OFFSET
from refine_perception.data.formats.lanes import AnnotationError
from refine_perception.metrics.instances import (
    APResult,
    PredInstance,
    check_class_score,
    foreground_pixels,
    to_mask,
    to_rle,
)

OVERLAPS = np.arange(0.5, 1.0, 0.05)  # the official values, 0.6000000000000001 and all
MIN_REGION_SIZE = 100
EVAL_LABELS = tuple(label for label in ID_TO_LABEL.values() if label.hasInstances and not label.ignoreInEval)
VOID_IDS = np.array(sorted(label.id for label in ID_TO_LABEL.values() if label.ignoreInEval), np.int64)
_EVAL_IDS = np.array([label.id for label in EVAL_LABELS], np.int64)


class _Records:
    """Ground-truth regions, predictions and their overlaps, gathered over all images (global indices)."""

    def __init__(self) -> None:
        self.gt_id: list[np.ndarray] = []  # instance or group id
        self.gt_class: list[np.ndarray] = []
        self.gt_pixels: list[np.ndarray] = []
        self.pred_class: list[int] = []
        self.pred_score: list[float] = []
        self.pred_pixels: list[int] = []
        self.pred_void: list[int] = []
        self.pair_pred: list[np.ndarray] = []
        self.pair_gt: list[np.ndarray] = []
        self.pair_inter: list[np.ndarray] = []
        self.n_gt = 0

    def add_image(self, index: int, instance_ids: np.ndarray, preds: Sequence[PredInstance]) -> None:
        ids = np.asarray(instance_ids)
        if ids.ndim != 2 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise ValueError(
                f"image {index}: instance ids must be a non-empty 2-D integer array, got {ids.dtype} {ids.shape}"
            )
        if ids.min() < 0 or ids.max() > 65535:
            raise ValueError(f"image {index}: instance ids must be 16-bit values (0..65535), as in Cityscapes' PNGs")
        # region index of every pixel by counting, not sorting: ids are 16-bit
        flat_ids = ids.ravel().astype(np.intp)
        present = np.bincount(flat_ids)
        uniq = np.flatnonzero(present)
        counts = present[uniq]
        region = np.zeros(len(present), np.intp)
        region[uniq] = np.arange(len(uniq))
        inverse = region[flat_ids]
        classes = np.where(uniq >= INSTANCE_OFFSET, uniq // INSTANCE_OFFSET, uniq)
        unknown = [int(c) for c in classes if int(c) not in ID_TO_LABEL]
        if unknown:
            raise ValueError(f"image {index}: instance ids of unknown classes {sorted(set(unknown))}")
        void = np.isin(uniq, VOID_IDS)[inverse]
        evaluated = np.isin(classes, _EVAL_IDS)
        offset = self.n_gt
        self.gt_id.append(uniq[evaluated])
        self.gt_class.append(classes[evaluated])
        self.gt_pixels.append(counts[evaluated])
        self.n_gt += int(evaluated.sum())
        local = np.full(len(uniq), -1)  # region index within this image -> global ground-truth index
        local[evaluated] = offset + np.arange(int(evaluated.sum()))
        for k, pred in enumerate(preds):
            where = f"image {index}, prediction {k}"
            check_class_score(pred.class_id, pred.score, where)
            label = ID_TO_LABEL.get(int(pred.class_id))
            if label is None:
                raise ValueError(f"{where}: class id {pred.class_id} is not a Cityscapes label id")
            if label.id not in _EVAL_IDS:
                continue
            flat, size = foreground_pixels(pred.mask, where)
            if size != ids.shape:
                raise ValueError(f"{where}: mask shape {size} differs from the ground truth's {ids.shape}")
            if flat.size == 0:
                continue
            inter = np.bincount(inverse[flat], minlength=len(uniq))
            hit = np.flatnonzero((inter > 0) & (classes == label.id))
            self.pair_pred.append(np.full(len(hit), len(self.pred_class)))
            self.pair_gt.append(local[hit])
            self.pair_inter.append(inter[hit])
            self.pred_class.append(label.id)
            self.pred_score.append(float(pred.score))
            self.pred_pixels.append(flat.size)
            self.pred_void.append(int(np.count_nonzero(void[flat])))


def _step_ap(y_true: np.ndarray, y_score: np.ndarray, hard_fns: int) -> float:
    """The official precision-recall integration, vectorised with the same float operations."""
    if y_true.size == 0:
        return 0.0
    order = np.argsort(y_score)
    true_cumsum = np.cumsum(y_true[order])
    _, first = np.unique(y_score[order], return_index=True)
    cum_before = np.append(true_cumsum, 0)[first - 1]  # trues scored below each threshold
    tp = true_cumsum[-1] - cum_before
    fp = len(y_score) - first - tp
    fn = cum_before + hard_fns
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)
    widths = np.convolve(np.concatenate(([recall[0]], recall, [0.0])), [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, widths))


def cityscapes_ap_matrix(
    gt_instance_ids: Sequence[np.ndarray], predictions: Sequence[Sequence[PredInstance]]
) -> np.ndarray:
    """AP per (evaluated class, overlap threshold): shape (8, 10), the official `resultApMatrix[0]`."""
    if len(gt_instance_ids) != len(predictions):
        raise ValueError(f"{len(gt_instance_ids)} ground-truth images but {len(predictions)} prediction images")
    rec = _Records()
    for index, (ids, preds) in enumerate(zip(gt_instance_ids, predictions)):
        rec.add_image(index, ids, preds)

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    gt_id, gt_class, gt_pixels = cat(rec.gt_id, np.int64), cat(rec.gt_class, np.int64), cat(rec.gt_pixels, np.int64)
    pred_class, pred_score = np.array(rec.pred_class, np.int64), np.array(rec.pred_score, np.float64)
    pred_pixels, pred_void = np.array(rec.pred_pixels, np.int64), np.array(rec.pred_void, np.int64)
    pair_pred, pair_gt = cat(rec.pair_pred, np.int64), cat(rec.pair_gt, np.int64)
    pair_inter = cat(rec.pair_inter, np.int64)

    is_instance = gt_id >= INSTANCE_OFFSET
    small = gt_pixels < MIN_REGION_SIZE
    valid = is_instance & ~small
    overlap = pair_inter / (gt_pixels[pair_gt] + pred_pixels[pair_pred] - pair_inter)
    n_pred = len(pred_class)
    ignored_pixels = (
        pred_void
        + np.bincount(pair_pred, weights=pair_inter * ~is_instance[pair_gt], minlength=n_pred)
        + np.bincount(pair_pred, weights=pair_inter * small[pair_gt], minlength=n_pred)
    )
    ignored_share = ignored_pixels / pred_pixels

    ap = np.zeros((len(EVAL_LABELS), len(OVERLAPS)))
    for t, threshold in enumerate(OVERLAPS):
        over = overlap > threshold
        found = np.zeros(n_pred, bool)
        found[pair_pred[over]] = True
        matched = np.flatnonzero(over & valid[pair_gt])
        for c, label in enumerate(EVAL_LABELS):
            n_valid = int(np.count_nonzero(valid & (gt_class == label.id)))
            of_class = pred_class == label.id
            if n_valid == 0 or not of_class.any():
                ap[c, t] = 0.0 if n_valid else np.nan
                continue
            pairs = matched[gt_class[pair_gt[matched]] == label.id]
            scores = pred_score[pair_pred[pairs]]
            order = np.lexsort((-scores, pair_gt[pairs]))  # per instance, best prediction first
            best = np.r_[True, np.diff(pair_gt[pairs][order]) != 0] if len(order) else np.zeros(0, bool)
            unmatched_fp = pred_score[of_class & ~found & (ignored_share <= threshold)]
            y_score = np.concatenate((scores[order][best], scores[order][~best], unmatched_fp))
            y_true = np.zeros(len(y_score))
            y_true[: int(best.sum())] = 1.0
            ap[c, t] = _step_ap(y_true, y_score, n_valid - int(best.sum()))
    return ap


def _nan_mean(values: np.ndarray) -> float:
    return float("nan") if np.isnan(values).all() else float(np.nanmean(values))


def cityscapes_ap(gt_instance_ids: Sequence[np.ndarray], predictions: Sequence[Sequence[PredInstance]]) -> APResult:
    """Cityscapes AP and AP50, overall and per class, of per-image predictions (regular label ids)
    against per-image `gtFine_instanceIds` maps."""
    ap = cityscapes_ap_matrix(gt_instance_ids, predictions)
    per_class = {
        label.name: {"AP": float(np.average(ap[c])), "AP50": float(ap[c, 0])} for c, label in enumerate(EVAL_LABELS)
    }
    return APResult("Cityscapes instance AP", {"AP": _nan_mean(ap), "AP50": _nan_mean(ap[:, 0])}, per_class)


def read_cityscapes_predictions(txt_path: str | Path) -> list[PredInstance]:
    """Predictions of one image from an official result txt, masks as RLE; a later line naming the same
    mask file replaces the earlier one, as in the official reader."""
    txt_path = Path(txt_path)
    try:
        lines = txt_path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(txt_path, None, f"cannot read: {error}") from None
    by_file: dict[Path, PredInstance] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise AnnotationError(txt_path, number, f"expected '<mask.png> <label id> <score>', got {line!r}")
        if os.path.isabs(fields[0]):
            raise AnnotationError(txt_path, number, f"mask path {fields[0]!r} must be relative to the txt file")
        try:
            class_id, score = int(float(fields[1])), float(fields[2])
        except ValueError:
            raise AnnotationError(txt_path, number, f"label id and score must be numbers, got {fields[1:]!r}") from None
        if not np.isfinite(score):
            raise AnnotationError(txt_path, number, f"score {fields[2]!r} is not finite")
        mask_path = (txt_path.parent / fields[0]).resolve()
        try:
            with Image.open(mask_path) as image:
                mask = np.asarray(image.convert("L")) != 0
        except OSError as error:
            raise AnnotationError(txt_path, number, f"cannot read mask {mask_path}: {error}") from None
        by_file[mask_path] = PredInstance(class_id, to_rle(mask, f"{txt_path}:{number}"), score)
    return list(by_file.values())


def write_cityscapes_predictions(txt_path: str | Path, predictions: Sequence[PredInstance]) -> None:
    """One image's predictions in the official format: the txt, and the masks as 0/255 PNGs in a folder
    named after the txt (without its suffix) next to it."""
    txt_path = Path(txt_path)
    mask_dir = txt_path.with_suffix("")
    mask_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, pred in enumerate(predictions):
        where = f"{txt_path}, prediction {k}"
        check_class_score(pred.class_id, pred.score, where)
        mask_path = mask_dir / f"{k:04d}.png"
        if not cv2.imwrite(str(mask_path), to_mask(pred.mask, where).astype(np.uint8) * 255):
            raise OSError(f"cannot write {mask_path}")
        lines.append(f"{mask_dir.name}/{mask_path.name} {int(pred.class_id)} {float(pred.score)!r}\n")
    txt_path.write_text("".join(lines))
