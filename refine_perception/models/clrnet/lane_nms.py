"""CLRNet's lane NMS (the CUDA kernel it inherits from LaneATT), vectorised in NumPy for the CPU side of
the detector.

Two lanes are duplicates when, over the rows both cover, their mean horizontal distance is below `thr`
pixels of the 800-wide input (50 by default): lanes are thin, so a box or mask IoU would say little.
The kernel's row arithmetic is kept: a lane covers rows trunc(start_y * 71 + 0.5) up to
trunc(start + length - 0.5), one row less when length < 1; the shared span is clipped at row 71 and a
pair with an empty span is never suppressed; suppression is strict (mean < thr). Candidates are visited
in decreasing score and a kept lane removes every later duplicate, until `top_k` lanes are kept.

Two choices where the kernel is undefined: equal scores keep input order (stable sort), and a start row
below 0 (start_y < -0.5/71) is clipped to row 0, where the kernel would read the lane's header fields as
xs. Distances are summed in float64.
"""

from __future__ import annotations

import numpy as np

from refine_perception.models.clrnet.priors import N_STRIPS, NUM_POINTS


def _as_vector(name: str, values: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def covered_rows(start_y: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last row (int64, inclusive) of each lane with the kernel's rounding; length in rows."""
    start = np.trunc(start_y * N_STRIPS + 0.5)
    end = np.trunc(start + length - 0.5 - (length < 1))
    return start.astype(np.int64), end.astype(np.int64)


def duplicate_matrix(start_y: np.ndarray, length: np.ndarray, xs: np.ndarray, thr: float) -> np.ndarray:
    """(N, N) bool: lane i and lane j are closer than thr pixels on average over their shared rows."""
    start, end = covered_rows(start_y, length)
    first = np.maximum(np.maximum(start[:, None], start[None, :]), 0)
    last = np.minimum(np.minimum(end[:, None], end[None, :]), N_STRIPS)
    rows = np.arange(NUM_POINTS)
    shared = (rows >= first[..., None]) & (rows <= last[..., None])
    gaps = np.abs(xs[:, None, :] - xs[None, :, :])
    total = np.where(shared, gaps, 0.0).sum(-1)
    return (last >= first) & (total < thr * (last - first + 1))


def lane_nms(
    scores: np.ndarray,
    start_y: np.ndarray,
    length: np.ndarray,
    xs: np.ndarray,
    thr: float = 50.0,
    top_k: int = 4,
) -> np.ndarray:
    """Indices (int64) of the kept lanes of one image, best score first.

    scores (N,); start_y (N,) normalised (0 = bottom row); length (N,) in rows (the head's length * 71);
    xs (N, 72) in pixels of the network input, row 0 at the bottom.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must have shape (N,), got {scores.shape}")
    count = scores.shape[0]
    scores = _as_vector("scores", scores, count)
    start_y = _as_vector("start_y", start_y, count)
    length = _as_vector("length", length, count)
    xs = np.asarray(xs, dtype=np.float64)
    if xs.shape != (count, NUM_POINTS):
        raise ValueError(f"xs must have shape ({count}, {NUM_POINTS}), got {xs.shape}")
    if not np.isfinite(xs).all():
        raise ValueError("xs contains NaN or infinite values")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")

    order = np.argsort(-scores, kind="stable")
    duplicates = duplicate_matrix(start_y[order], length[order], xs[order], thr)
    alive = np.ones(count, dtype=bool)
    keep: list[int] = []
    while len(keep) < top_k and alive.any():
        best = int(np.argmax(alive))  # first alive candidate in score order
        keep.append(best)
        alive[best] = False
        alive &= ~duplicates[best]
    return order[np.array(keep, dtype=np.int64)]
