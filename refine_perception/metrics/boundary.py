"""Boundary-quality metrics: Boundary IoU (Cheng et al., CVPR 2021) and the DAVIS/BSDS boundary F-score
that BPR and SegFix report.

Boundary IoU follows bowenc0221/boundary-iou-api (`mask_to_boundary`): the boundary of a mask is the
band of mask pixels within d pixels of the outside, d = round(dilation_ratio * image diagonal) and at
least 1, found by eroding the mask d times with a 3x3 square after padding the image with one row and
column of background, so a mask cut by the image border has a boundary there too. Boundary IoU is the
IoU of the two bands; it is the paper's |(G_d & G) & (P_d & P)| / |(G_d & G) | (P_d & P)|. The official
ratio is 0.02 for COCO and LVIS, 0.005 for Cityscapes' 1024x2048 images.

The boundary F-score follows DAVIS' `db_eval_boundary` as openseg.pytorch's `F1_running_score` (the
evaluation BPR points to) runs it: boundaries are one pixel wide (`seg2bmap`: a pixel whose label differs
from its right, lower or lower-right neighbour; the image border is no boundary), each boundary is
dilated with a disk of radius `tolerance_px` (x^2 + y^2 <= r^2, skimage's `disk`), precision is the
fraction of predicted boundary pixels within the dilated ground-truth boundary, recall the converse,
F = 2PR / (P + R). Both boundaries empty gives P = R = 1; only one empty gives (P, R) = (1, 0) or (0, 1).
Ignored pixels are set to background in both masks before the boundaries are taken, as openseg does.
openseg's default tolerance is ceil(0.00088 * image diagonal): 3 px on 1024x2048.
Per class, the score of a class is its F averaged over all images, including images where the class is
absent from both maps (they score 1), as openseg averages it.
Label maps (semantic or instance ids) are accepted where binary masks are: their boundary is where the
label changes, which for instance maps includes the contact lines between touching instances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from refine_perception.metrics.instances import percent
from refine_perception.metrics.table import format_table

COCO_DILATION_RATIO = 0.02
CITYSCAPES_DILATION_RATIO = 0.005
OPENSEG_BOUNDARY_RATIO = 0.00088  # openseg's default boundary_threshold, a fraction of the diagonal


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array, got shape {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return array


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes {a.shape} and {b.shape} differ")


def boundary_width(shape: tuple[int, int], dilation_ratio: float) -> int:
    """d of Boundary IoU for an image of this (height, width)."""
    if not (math.isfinite(dilation_ratio) and dilation_ratio >= 0):
        raise ValueError(f"dilation_ratio must be a finite number >= 0, got {dilation_ratio}")
    return max(1, int(round(dilation_ratio * math.hypot(*shape))))


def mask_boundary(mask: np.ndarray, dilation_ratio: float = COCO_DILATION_RATIO) -> np.ndarray:
    """The inner boundary band of a binary mask (bool), as Boundary IoU defines it."""
    mask = _as_2d(mask, "mask").astype(bool)
    d = boundary_width(mask.shape, dilation_ratio)
    band = np.zeros_like(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return band
    # Everything outside the mask's box is background, so eroding the box padded with one background
    # pixel gives the band the official padded full image gives, at the cost of the box only.
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop = mask[box]
    eroded = cv2.erode(np.pad(crop.view(np.uint8), 1), np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    band[box] = crop & ~eroded.view(bool)
    return band


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def boundary_iou(mask_a: np.ndarray, mask_b: np.ndarray, dilation_ratio: float = COCO_DILATION_RATIO) -> float:
    """Boundary IoU of two binary masks of one image; 1.0 when both are empty (they agree)."""
    a, b = _as_2d(mask_a, "mask_a"), _as_2d(mask_b, "mask_b")
    _same_shape(a, b, "boundary_iou")
    return _iou(mask_boundary(a, dilation_ratio), mask_boundary(b, dilation_ratio))


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """One-pixel boundaries of a binary mask or label map (DAVIS `seg2bmap` at full resolution)."""
    labels = _as_2d(labels, "label map")
    out = np.zeros(labels.shape, bool)
    out[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    out[:-1, :] |= labels[:-1, :] != labels[1:, :]
    out[:-1, :-1] |= labels[:-1, :-1] != labels[1:, 1:]
    return out


def disk(radius: int) -> np.ndarray:
    """uint8 structuring element of the pixels with x^2 + y^2 <= radius^2."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2 <= radius**2).astype(np.uint8)


def tolerance_from_ratio(shape: tuple[int, int], ratio: float = OPENSEG_BOUNDARY_RATIO) -> int:
    """Pixel tolerance for a fraction of the image diagonal, rounded up as DAVIS does."""
    return int(math.ceil(ratio * math.hypot(*shape)))


@dataclass(frozen=True)
class BoundaryF:
    precision: float
    recall: float

    @property
    def f(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _check_tolerance(tolerance_px: int) -> None:
    if isinstance(tolerance_px, bool) or not isinstance(tolerance_px, (int, np.integer)) or tolerance_px < 0:
        raise ValueError(f"tolerance_px must be an integer >= 0, got {tolerance_px!r}")


def _boundary_pr(pred_boundary: np.ndarray, gt_boundary: np.ndarray, tolerance_px: int) -> BoundaryF:
    n_pred, n_gt = np.count_nonzero(pred_boundary), np.count_nonzero(gt_boundary)
    if n_pred == 0 or n_gt == 0:
        return BoundaryF(float(n_pred == 0), float(n_gt == 0))
    kernel = disk(tolerance_px)
    gt_near = cv2.dilate(gt_boundary.view(np.uint8), kernel).view(bool)
    pred_near = cv2.dilate(pred_boundary.view(np.uint8), kernel).view(bool)
    return BoundaryF(
        np.count_nonzero(pred_boundary & gt_near) / n_pred, np.count_nonzero(gt_boundary & pred_near) / n_gt
    )


def boundary_f_score(
    pred: np.ndarray, gt: np.ndarray, tolerance_px: int, ignore: np.ndarray | None = None
) -> BoundaryF:
    """Boundary precision/recall/F of two binary masks or two label maps (semantic or instance ids)
    within `tolerance_px` pixels; `ignore` (bool) pixels become background (label 0) in both first."""
    pred, gt = _as_2d(pred, "pred"), _as_2d(gt, "gt")
    _same_shape(pred, gt, "boundary_f_score")
    _check_tolerance(tolerance_px)
    if ignore is not None:
        ignore = _as_2d(ignore, "ignore").astype(bool)
        _same_shape(ignore, gt, "boundary_f_score ignore mask")
        pred, gt = np.where(ignore, 0, pred), np.where(ignore, 0, gt)
    return _boundary_pr(label_boundaries(pred), label_boundaries(gt), tolerance_px)


class SemanticBoundaryF:
    """Per-class boundary F over many images (openseg's F1RunningScore on label maps): each image adds
    the F of `pred == c` against `gt == c` for every class c, pixels labelled `ignore_label` in the
    ground truth being background in both."""

    def __init__(
        self,
        num_classes: int,
        tolerance_px: int,
        ignore_label: int = 255,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        _check_tolerance(tolerance_px)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.tolerance_px = int(tolerance_px)
        self.ignore_label = ignore_label
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        self.f_sum = np.zeros(num_classes)
        self.images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = _as_2d(pred, "pred"), _as_2d(gt, "gt")
        _same_shape(pred, gt, "SemanticBoundaryF.update")
        valid = gt != self.ignore_label
        for c in range(self.num_classes):
            scores = _boundary_pr(
                label_boundaries((pred == c) & valid), label_boundaries((gt == c) & valid), self.tolerance_px
            )
            self.f_sum[c] += scores.f
        self.images += 1

    def per_class(self) -> np.ndarray:
        """Mean F per class over the images seen (NaN before any)."""
        return self.f_sum / self.images if self.images else np.full(self.num_classes, np.nan)

    def mean(self) -> float:
        return float(np.mean(self.per_class()))

    def table(self) -> str:
        rows = [["class", f"F@{self.tolerance_px}px"]]
        rows += [[name, percent(f)] for name, f in zip(self.class_names, self.per_class())]
        rows.append(["mean", percent(self.mean())])
        return f"Boundary F ({self.images} images)\n" + format_table(rows)

    def __str__(self) -> str:
        return self.table()
