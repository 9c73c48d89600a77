"""Ground-truth lanes (point lists) to the (78,) rows the loss and the assignment read (layout in
`loss.py`), following the official label generation.

Each lane is resampled at the 72 prior rows of the 800x320 label space: a cubic spline between its
annotated points, and below its lowest point a straight line through its two lowest points, so a lane
annotated from mid-image still reaches the bottom edge where it would (the decoder extends its lanes the
same way). The lane's start is its lowest row inside the image, its length the number of consecutive
inside rows from there, and theta the mean angle from the start point to every later point.

Where the official code silently mis-indexes (a lane that leaves the image at a side and comes back
shifts every later x), we keep only the first run of inside rows; rows outside it are absent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import InterpolatedUnivariateSpline

from refine_perception.models.clrnet.priors import IMG_H, IMG_W, LANE_FIELDS, N_STRIPS, NUM_POINTS

ABSENT_X = -1e5  # x of a row where a lane does not exist


def sample_rows(img_h: int = IMG_H) -> np.ndarray:
    """y (pixels, label space) of the 72 prior rows, bottom (img_h) to top (0)."""
    return img_h - np.arange(NUM_POINTS) * (img_h / N_STRIPS)


def lane_row_xs(points: np.ndarray, img_h: int = IMG_H) -> np.ndarray:
    """x at each of the 72 rows (NaN above the lane's top) of a lane given bottom to top in label space."""
    points = np.asarray(points, dtype=np.float64)
    order = np.argsort(-points[:, 1], kind="stable")
    points = points[order]
    _, first = np.unique(-points[:, 1], return_index=True)  # one point per row, the first given
    points = points[np.sort(first)]
    if len(points) < 2:
        raise ValueError("a lane needs at least two points on different rows")
    ys = sample_rows(img_h)
    y_up, x_up = points[::-1, 1], points[::-1, 0]  # increasing y for the spline
    xs = np.full(NUM_POINTS, np.nan)
    inside = (ys >= y_up[0]) & (ys <= y_up[-1])
    xs[inside] = InterpolatedUnivariateSpline(y_up, x_up, k=min(3, len(points) - 1))(ys[inside])
    below = ys > y_up[-1]
    slope, offset = np.polyfit(points[:2, 1], points[:2, 0], 1)
    xs[below] = slope * ys[below] + offset
    return xs


def encode_lanes(
    lanes: Sequence[np.ndarray], img_w: int = IMG_W, img_h: int = IMG_H
) -> tuple[np.ndarray, np.ndarray]:
    """(G, 78) float32 targets of the lanes (each (N, 2) in label-space pixels) that keep at least two
    rows inside the image, and the indices of those lanes in `lanes`. Lanes too short or outside the
    image are dropped (augmentation legitimately pushes lanes out); malformed ones raise ValueError."""
    rows: list[np.ndarray] = []
    kept: list[int] = []
    strip = img_h / N_STRIPS
    for index, lane in enumerate(lanes):
        lane = np.asarray(lane, dtype=np.float64)
        if lane.ndim != 2 or lane.shape[1] != 2:
            raise ValueError(f"lane {index} must be an (N, 2) array of points, got shape {lane.shape}")
        if not np.isfinite(lane).all():
            raise ValueError(f"lane {index} contains NaN or infinite coordinates")
        if len(np.unique(lane[:, 1])) < 2:
            continue
        xs = lane_row_xs(lane, img_h)
        inside = np.isfinite(xs) & (xs >= 0) & (xs < img_w)
        if not inside.any():
            continue
        start = int(np.argmax(inside))
        after = np.flatnonzero(~inside[start:])
        length = int(after[0]) if len(after) else NUM_POINTS - start
        if length < 2:
            continue
        run = xs[start : start + length]
        offsets = np.arange(1, length) * strip
        angles = np.arctan(offsets / (run[1:] - run[0] + 1e-5)) / math.pi
        theta = float(np.where(angles > 0, angles, 1.0 + angles).mean())
        row = np.full(LANE_FIELDS, ABSENT_X, dtype=np.float64)
        row[:6] = (0.0, 1.0, start / N_STRIPS, run[0], theta, length)
        row[6 + start : 6 + start + length] = run
        rows.append(row)
        kept.append(index)
    targets = np.stack(rows).astype(np.float32) if rows else np.zeros((0, LANE_FIELDS), np.float32)
    return targets, np.asarray(kept, dtype=np.int64)
