"""BPR's patch proposals: where along a mask's boundary the refinement network looks.

Every pixel whose 3x3 window holds both mask and background is a boundary pixel: the one-pixel ring inside
the contour and the one outside it, so both sides of the edge are covered. Each proposes the square box
centred on it, scored by how mixed its window is (min(S, 9 - S) / 4.5 for S mask pixels in the window);
boxes that stick out of the image slide back inside. Greedy box NMS (highest score first; ties in raster
order, so the result does not depend on a sort's whims) thins the dense proposals.

Why a coverage pass after the NMS: at the paper's training threshold (IoU 0.25) two boxes side by side may
suppress each other with centres 38 px apart, farther than a 64 px box reaches, so a boundary pixel can be
left in no patch. Every boundary pixel that no kept box contains proposes its own box again, so the
refinement sees the whole boundary whatever the threshold.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_PATCH = 64


def boundary_scores(mask: np.ndarray) -> np.ndarray:
    """(H, W) float32: min(S, 9 - S) / 4.5 with S the mask pixels in each pixel's 3x3 window (outside the
    image counts as background); non-zero exactly on the two rings along the contour."""
    if mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(f"expected a bool (H, W) mask, got {mask.dtype} {mask.shape}")
    counts = cv2.boxFilter(mask.astype(np.float32), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return (np.minimum(counts, 9.0 - counts) / 4.5).astype(np.float32)


def _boxes_at(ys: np.ndarray, xs: np.ndarray, size: int, shape: tuple[int, int]) -> np.ndarray:
    """(K, 4) int boxes x0, y0, x1, y1 (exclusive) of side `size` centred on the points, slid inside the image."""
    height, width = shape
    x0 = np.clip(xs - size // 2, 0, width - size)
    y0 = np.clip(ys - size // 2, 0, height - size)
    return np.stack([x0, y0, x0 + size, y0 + size], axis=1).astype(np.int64)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS: highest score first, ties by index; a box is dropped when
    its IoU with a kept one exceeds `iou_threshold`."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    alive = np.ones(len(boxes), bool)
    for i in order:
        if not alive[i]:
            continue
        kept.append(int(i))
        inter_w = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]), 0, None)
        inter_h = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]), 0, None)
        inter = inter_w * inter_h
        iou = inter / (areas[i] + areas - inter)
        alive &= iou <= iou_threshold
    return np.asarray(kept, np.int64)


def propose_patches(mask: np.ndarray, patch_size: int = DEFAULT_PATCH, iou_threshold: float = 0.55) -> np.ndarray:
    """(K, 4) int64 boxes x0, y0, x1, y1 (exclusive) along the boundary of `mask`, every boundary pixel
    inside at least one. The side is `patch_size`, or the image's shorter side when that is smaller."""
    if not 0 <= iou_threshold < 1:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    scores = boundary_scores(mask)
    size = min(int(patch_size), *mask.shape)
    if size < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    ys, xs = np.nonzero(scores)
    if ys.size == 0:
        return np.zeros((0, 4), np.int64)
    boxes = _boxes_at(ys, xs, size, mask.shape)
    kept = [boxes[k] for k in box_nms(boxes, scores[ys, xs], iou_threshold)]
    covered = np.zeros(mask.shape, bool)
    for x0, y0, x1, y1 in kept:
        covered[y0:y1, x0:x1] = True
    for k in np.flatnonzero(~covered[ys, xs]):  # in raster order; each new box covers its neighbours too
        if not covered[ys[k], xs[k]]:
            x0, y0, x1, y1 = boxes[k]
            kept.append(boxes[k])
            covered[y0:y1, x0:x1] = True
    return np.stack(kept)
