"""Lane NMS: hand cases of the kernel's rule and equality with a literal loop port of the CUDA kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refine_perception.models.clrnet.lane_nms import covered_rows, lane_nms


def lanes(*x_px: float) -> np.ndarray:
    return np.array([np.full(72, x) for x in x_px], dtype=np.float64)


def test_close_lanes_are_suppressed_far_ones_kept() -> None:
    xs = lanes(100, 130, 300)
    keep = lane_nms(np.array([0.9, 0.8, 0.7]), np.zeros(3), np.full(3, 72.0), xs)
    assert keep.tolist() == [0, 2]
    keep = lane_nms(np.array([0.7, 0.8, 0.9]), np.zeros(3), np.full(3, 72.0), xs)
    assert keep.tolist() == [2, 1]  # score order; lane 0 is the duplicate of lane 1 now


def test_threshold_is_strict() -> None:
    xs = lanes(100, 150)  # mean distance exactly 50
    assert lane_nms(np.array([0.9, 0.8]), np.zeros(2), np.full(2, 72.0), xs, thr=50).tolist() == [0, 1]
    assert lane_nms(np.array([0.9, 0.8]), np.zeros(2), np.full(2, 72.0), xs, thr=50.01).tolist() == [0]


def test_distance_is_taken_over_shared_rows_only() -> None:
    # lane 1 starts at row 36 (start_y 36/71); below it the two lanes are 500 px apart, above 10 px
    xs = lanes(100, 110)
    xs[1, :36] = 600
    start_y = np.array([0.0, 36 / 71])
    keep = lane_nms(np.array([0.9, 0.8]), start_y, np.array([72.0, 36.0]), xs)
    assert keep.tolist() == [0]


def test_disjoint_row_spans_never_suppress() -> None:
    # lane 0 covers rows 0..29, lane 1 rows 30..71: end < start, identical xs do not matter
    xs = lanes(100, 100)
    start_y = np.array([0.0, 30 / 71])
    assert lane_nms(np.array([0.9, 0.8]), start_y, np.array([30.0, 42.0]), xs).tolist() == [0, 1]
    # one more row of length makes them share row 30
    assert lane_nms(np.array([0.9, 0.8]), start_y, np.array([31.0, 42.0]), xs).tolist() == [0]


def test_row_rounding() -> None:
    start, end = covered_rows(np.array([0.0, 10.4 / 71, 10.6 / 71, 0.0, 0.5]), np.array([1.0, 5.2, 5.6, 0.0, 100]))
    assert start.tolist() == [0, 10, 11, 0, 36]
    # end = trunc(start + length - 0.5), one less for length < 1
    assert end.tolist() == [0, 14, 16, -1, 135]


def test_top_k_and_empty_input() -> None:
    xs = lanes(100, 200, 300, 400, 500, 600)
    scores = np.array([0.1, 0.6, 0.5, 0.4, 0.3, 0.2])
    keep = lane_nms(scores, np.zeros(6), np.full(6, 72.0), xs, top_k=4)
    assert keep.tolist() == [1, 2, 3, 4]
    empty = lane_nms(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 72)))
    assert empty.dtype == np.int64 and empty.size == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="xs must have shape"):
        lane_nms(np.ones(2), np.zeros(2), np.ones(2), np.zeros((2, 71)))
    with pytest.raises(ValueError, match="length must have shape"):
        lane_nms(np.ones(2), np.zeros(2), np.ones(3), np.zeros((2, 72)))
    with pytest.raises(ValueError, match="scores contains NaN"):
        lane_nms(np.array([np.nan, 1.0]), np.zeros(2), np.ones(2), np.zeros((2, 72)))
    with pytest.raises(ValueError, match="top_k"):
        lane_nms(np.ones(2), np.zeros(2), np.ones(2), np.zeros((2, 72)), top_k=0)


# ----------------------------------------------------------------- literal port of the CUDA kernel


def c_int(value: float) -> int:
    """A C float-to-int conversion: truncation towards zero."""
    return math.trunc(value)


def kernel_overlaps(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """The kernel's pair test on two 77-float proposals (2 scores, start_y, start_x, length, 72 xs)."""
    start_a = c_int(a[2] * 71 + 0.5)
    start_b = c_int(b[2] * 71 + 0.5)
    start = max(start_a, start_b)
    end_a = c_int(start_a + a[4] - 1 + 0.5 - ((a[4] - 1) < 0))
    end_b = c_int(start_b + b[4] - 1 + 0.5 - ((b[4] - 1) < 0))
    end = min(min(end_a, end_b), 71)
    if end < start:
        return False
    dist = 0.0
    for i in range(5 + start, 5 + end + 1):
        dist += b[i] - a[i] if a[i] < b[i] else a[i] - b[i]
    return dist < threshold * (end - start + 1)


def kernel_nms(proposals: np.ndarray, scores: np.ndarray, threshold: float, top_k: int) -> list[int]:
    """Sort, mark for each proposal the later ones it overlaps, then collect greedily up to top_k."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    count = len(order)
    mask = [[False] * count for _ in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            mask[i][j] = kernel_overlaps(proposals[order[i]], proposals[order[j]], threshold)
    removed = [False] * count
    keep: list[int] = []
    for i in range(count):
        if not removed[i]:
            keep.append(order[i])
            for j in range(count):
                removed[j] = removed[j] or mask[i][j]
            if len(keep) == top_k:
                break
    return keep


@pytest.mark.parametrize("seed", range(8))
def test_matches_kernel_port_on_random_lanes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 40))
    scores = rng.permutation(count) / count + 0.01  # distinct scores: the sort order is defined
    start_y = rng.uniform(0, 1, count)
    length = rng.uniform(-2, 75, count)
    base = rng.uniform(0, 800, count)[:, None]
    slope = rng.uniform(-3, 3, count)[:, None]
    xs = base + slope * np.arange(72) + rng.normal(0, 15, (count, 72))
    proposals = np.concatenate(
        [np.stack([1 - scores, scores, start_y, np.zeros(count), length], axis=1), xs], axis=1
    )
    for threshold in (20.0, 50.0, 120.0):
        for top_k in (1, 4, count):
            expected = kernel_nms(proposals, scores, threshold, top_k)
            assert lane_nms(scores, start_y, length, xs, thr=threshold, top_k=top_k).tolist() == expected
