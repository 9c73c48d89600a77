"""Putting refined patches back: each patch's foreground probability, resized to its box, is averaged with
every other patch over the same pixel, and the mask becomes (mean > 0.5) where any patch lies; pixels
outside every patch keep the coarse mask (BPR's merge, unweighted)."""

from __future__ import annotations

import cv2
import numpy as np


def paste_patches(coarse: np.ndarray, boxes: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The refined bool mask of `coarse` (H, W) bool from the patches' foreground probabilities (K, S, S) in
    the boxes (K, 4) x0, y0, x1, y1 (exclusive)."""
    if coarse.ndim != 2 or coarse.dtype != np.bool_:
        raise ValueError(f"expected a bool (H, W) mask, got {coarse.dtype} {coarse.shape}")
    if len(boxes) != len(probabilities):
        raise ValueError(f"{len(boxes)} boxes for {len(probabilities)} patches")
    total = np.zeros(coarse.shape, np.float32)
    count = np.zeros(coarse.shape, np.float32)
    for (x0, y0, x1, y1), patch in zip(np.asarray(boxes, np.int64), probabilities):
        resized = cv2.resize(np.asarray(patch, np.float32), (int(x1 - x0), int(y1 - y0)), interpolation=cv2.INTER_LINEAR)
        total[y0:y1, x0:x1] += resized
        count[y0:y1, x0:x1] += 1.0
    refined = coarse.copy()
    touched = count > 0
    refined[touched] = total[touched] / count[touched] > 0.5
    return refined
