"""Semantic segmentation IoU from a confusion matrix accumulated over any number of images, with the
semantics of cityscapesscripts' `evalPixelLevelSemanticLabeling`:
- ground-truth pixels with the ignore label (255, or a Cityscapes void id) are left out;
- a prediction outside the evaluated classes (void, ignore, unknown id) on a valid pixel still counts as
  a miss (FN) of the ground-truth class, so the matrix keeps a last column for such predictions;
- IoU_c = TP / (TP + FP + FN), NaN for a class never seen nor predicted on valid pixels; mIoU is the
  mean over the classes that are not NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from refine_perception.data.formats.cityscapes import LABELS, LANE_MARKING, ROAD_ID
from refine_perception.metrics.instances import json_float, percent
from refine_perception.metrics.table import format_table


def _label_map(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 2-D label map, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold integer labels, got dtype {array.dtype}")
    return array


class SemanticConfusion:
    """Pixel counts: rows = ground-truth class, columns = predicted class plus one column for
    predictions outside [0, num_classes). `lookup` (optional) maps raw label ids of both maps to class
    indices first (entries outside [0, num_classes) mean void), e.g. Cityscapes label ids to train ids."""

    def __init__(
        self,
        num_classes: int,
        ignore_label: int = 255,
        class_names: Sequence[str] | None = None,
        lookup: np.ndarray | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        if 0 <= ignore_label < num_classes:
            raise ValueError(f"ignore_label {ignore_label} must not be a class index (0..{num_classes - 1})")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.lookup = None if lookup is None else np.asarray(lookup, np.int64)
        self.matrix = np.zeros((num_classes, num_classes + 1), np.int64)
        self._tables: dict[np.dtype, np.ndarray] = {}

    @classmethod
    def cityscapes(cls, lane_marking: bool = True) -> SemanticConfusion:
        """Confusion over Cityscapes' 19 train classes (plus the project's lane marking as class 19, or
        lane marking folded into road), fed with label-id maps; void ids are ignored in the ground truth."""
        lookup = np.full(256, 255, np.int64)
        names: dict[int, str] = {}
        for label in LABELS:
            if 0 <= label.trainId < 255 and (lane_marking or label is not LANE_MARKING):
                lookup[label.id] = label.trainId
                names[label.trainId] = label.name
        if not lane_marking:
            lookup[LANE_MARKING.id] = lookup[ROAD_ID]
        return cls(len(names), 255, [names[k] for k in sorted(names)], lookup)

    def _classes(self, labels: np.ndarray) -> np.ndarray:
        """Raw labels -> class indices, num_classes for anything that is not a class; 8- and 16-bit maps
        go through a cached table (several times faster on 2-megapixel maps)."""
        if labels.dtype in (np.uint8, np.uint16):
            table = self._tables.get(labels.dtype)
            if table is None:
                table = self._classes(np.arange(np.iinfo(labels.dtype).max + 1)).astype(np.int32)
                self._tables[labels.dtype] = table
            return np.take(table, labels)
        labels = labels.astype(np.int64, copy=False)
        if self.lookup is not None:
            inside = (labels >= 0) & (labels < len(self.lookup))
            labels = np.where(inside, self.lookup[np.where(inside, labels, 0)], self.num_classes)
        return np.where((labels >= 0) & (labels < self.num_classes), labels, self.num_classes)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image's label maps."""
        pred, gt = _label_map(pred, "pred"), _label_map(gt, "gt")
        if pred.shape != gt.shape:
            raise ValueError(f"pred shape {pred.shape} differs from gt shape {gt.shape}")
        gt_class = self._classes(gt)
        if self.lookup is None:  # with a lookup every id that is not a class is void by definition
            unknown = (gt_class == self.num_classes) & (gt != self.ignore_label)
            if unknown.any():
                labels = np.unique(gt[unknown])[:10].tolist()
                raise ValueError(f"gt holds labels that are neither classes nor ignore: {labels}")
        # ground truth that is not a class (ignore, void) lands in row num_classes, which is dropped
        n = self.num_classes + 1
        counts = np.bincount((gt_class * n + self._classes(pred)).ravel(), minlength=n * n).reshape(n, n)
        self.matrix += counts[: self.num_classes]

    def merge(self, other: SemanticConfusion) -> None:
        """Add counts gathered elsewhere (another worker) with the same classes."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError(f"cannot merge a {other.matrix.shape} confusion into a {self.matrix.shape} one")
        self.matrix += other.matrix

    def iou(self) -> np.ndarray:
        """Per-class IoU (NaN where the class is absent from valid ground truth and never predicted)."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=1) + self.matrix[:, : self.num_classes].sum(axis=0) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float("nan") if np.isnan(iou).all() else float(np.nanmean(iou))

    def to_dict(self) -> dict[str, Any]:
        per_class = {name: json_float(v) for name, v in zip(self.class_names, self.iou())}
        return {"mIoU": json_float(self.miou()), "IoU": per_class}

    def table(self) -> str:
        rows = [["class", "IoU"]]
        rows += [[n, percent(v)] for n, v in zip(self.class_names, self.iou())]
        rows.append(["mIoU", percent(self.miou())])
        return f"Semantic IoU ({int(self.matrix.sum())} valid pixels)\n" + format_table(rows)

    def __str__(self) -> str:
        return self.table()
