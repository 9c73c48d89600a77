"""Decoding CLRNet's output to lanes of the original image, and sampling lanes at benchmark rows; the
whole path against a lane-by-lane port of the official decode and CULane prediction writer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import InterpolatedUnivariateSpline

from refine_perception.models.clrnet.decode import (
    CULANE_ROWS,
    DecodeSettings,
    decode_lanes,
    lane_scores,
    sample_lane,
    visible_rows,
)
from refine_perception.models.clrnet.lane_nms import lane_nms

CULANE = DecodeSettings()  # 1640x590, top 270 rows cut
ROWS = np.arange(72)


def row_y(rows: np.ndarray) -> np.ndarray:
    """Original-image y of prior rows: the 320-px-high crop below row 270, row 0 at the bottom."""
    return (1 - rows / 71) * 320 + 270


def output(score_logit: float, start_row: float, length_rows: float, xs: np.ndarray) -> np.ndarray:
    lane = np.zeros(78)
    lane[1] = score_logit
    lane[2] = start_row / 71
    lane[5] = length_rows / 71
    lane[6:] = xs
    return lane


def test_decode_full_lane_and_suppression() -> None:
    predictions = np.stack(
        [
            output(-1.0, 0, 5, np.full(72, 0.1)),  # score 0.27 < 0.4: dropped
            output(1.5, 0, 72, np.full(72, 0.5 + 10 / 799)),  # 10 px from the next: suppressed
            output(2.0, 0, 72, np.full(72, 0.5)),
        ]
    )
    lanes, scores, _ = decode_lanes(torch.from_numpy(predictions).float(), CULANE)
    assert scores == pytest.approx([1 / (1 + np.exp(-2.0))])
    (lane,) = lanes
    assert lane.shape == (72, 2)
    np.testing.assert_allclose(lane[:, 0], 0.5 * 1640)  # normalised x times the original width
    np.testing.assert_allclose(lane[:, 1], row_y(ROWS), atol=1e-4)
    assert lane[0, 1] == pytest.approx(590) and lane[-1, 1] == pytest.approx(270)


def test_decode_extends_to_bottom_and_cuts_at_length() -> None:
    rising = 0.2 + 0.001 * ROWS
    leaving = np.where(ROWS < 10, -0.05, 0.9)  # outside the image below row 10
    leaving[25] = -0.1  # a gap inside the covered rows
    predictions = np.stack([output(3.0, 20, 30, rising), output(2.0, 20, 10, leaving)])
    lanes, scores, _ = decode_lanes(predictions, CULANE)
    assert len(lanes) == 2 and scores[0] > scores[1]
    # rows 0..19 below the start stay (inside the image down to the bottom), 20..49 covered
    np.testing.assert_allclose(lanes[0][:, 0], rising[:50] * 1640)
    np.testing.assert_allclose(lanes[0][:, 1], row_y(ROWS[:50]), atol=1e-4)
    # the extension stops where x leaves the image (row 9); row 25 is dropped; rows 30+ are past the end
    expected_rows = [r for r in range(10, 30) if r != 25]
    np.testing.assert_allclose(lanes[1][:, 1], row_y(np.array(expected_rows)), atol=1e-4)


def test_visible_rows_rounding_and_short_lanes() -> None:
    xs = np.full((3, 72), 0.5)
    xs[:, 5] = 1.2  # past the right border: cuts an extension but not a covered row
    visible = visible_rows(xs, np.array([10.4 / 71, 3 / 71, 10 / 71]), np.array([2.5, 4.0, 0.0]))
    assert np.flatnonzero(visible[0]).tolist() == list(range(6, 12))  # start 10, length 2 (half to even)
    assert np.flatnonzero(visible[1]).tolist() == list(range(0, 7))
    assert np.flatnonzero(visible[2]).tolist() == list(range(6, 10))  # length 0: only the extension
    single = output(2.0, 71, 1, np.where(ROWS == 71, 0.5, -1.0))  # one point at the top row: not a lane
    lanes, scores, _ = decode_lanes(single[None], CULANE)
    assert lanes == [] and scores.size == 0


def test_decode_top_k_and_no_detection() -> None:
    predictions = np.stack([output(1.0 + i, 0, 72, np.full(72, 0.1 + 0.15 * i)) for i in range(6)])
    lanes, scores, _ = decode_lanes(predictions, DecodeSettings(max_lanes=4))
    assert len(lanes) == 4
    assert [lane[0, 0] for lane in lanes] == pytest.approx([(0.1 + 0.15 * i) * 1640 for i in (5, 4, 3, 2)])
    lanes, _, _ = decode_lanes(np.zeros((192, 78)), CULANE)  # scores 0.5 but length 0: no row left
    assert lanes == []
    lanes, scores, _ = decode_lanes(np.tile(output(-3.0, 0, 72, np.full(72, 0.5)), (192, 1)), CULANE)
    assert lanes == [] and scores.size == 0


def test_decode_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(P, 78\)"):
        decode_lanes(np.zeros((4, 77)))
    broken = np.zeros((2, 78))
    broken[1, 7] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_lanes(broken)
    with pytest.raises(ValueError, match="cut_height"):
        DecodeSettings(cut_height=600)


def test_sample_straight_lane_at_culane_rows() -> None:
    lane = np.stack([np.full(72, 820.0), row_y(ROWS)], axis=1)
    for method in ("spline", "linear"):
        points = sample_lane(lane, CULANE_ROWS, 1640, 590, method=method)  # type: ignore[arg-type]
        assert points[:, 1].tolist() == list(range(582, 269, -8))  # bottom to top
        np.testing.assert_allclose(points[:, 0], 820.0, atol=1e-6)


def test_spline_follows_curves_and_margin() -> None:
    ys = row_y(ROWS[::4])  # 18 points from y = 590 up to y ~ 288
    lane = np.stack([0.002 * (ys - 200) ** 2 + 300, ys], axis=1)
    spline = sample_lane(lane, np.array([300.0, 450.0]), 1640, 590)
    np.testing.assert_allclose(spline[:, 0], [0.002 * 250**2 + 300, 0.002 * 100**2 + 300], atol=1e-6)
    linear = sample_lane(lane, np.array([300.0, 450.0]), 1640, 590, method="linear")
    assert abs(linear[1, 0] - 320.0) > 0.01  # chords cut the parabola
    # the spline goes 1 % of the height (5.9 px) past the last point, linear stops there
    top = ys[-1]
    rows = np.array([top - 5.0, top - 7.0])
    assert sample_lane(lane, rows, 1640, 590)[:, 1].tolist() == [top - 5.0]
    assert sample_lane(lane, rows, 1640, 590, method="linear").size == 0


def test_sample_drops_points_outside_and_bad_input() -> None:
    lane = np.array([[1600.0, 590.0], [1700.0, 400.0]])  # leaves the 1640-wide image
    points = sample_lane(lane, np.array([590.0, 500.0, 450.0]), 1640, 590)
    assert points[:, 1].tolist() == [590.0]
    with pytest.raises(ValueError, match="N >= 2"):
        sample_lane(lane[:1], CULANE_ROWS, 1640, 590)
    with pytest.raises(ValueError, match="bottom to top"):
        sample_lane(lane[::-1], CULANE_ROWS, 1640, 590)
    with pytest.raises(ValueError, match="method"):
        sample_lane(lane, CULANE_ROWS, 1640, 590, method="cubic")  # type: ignore[arg-type]


# ----------------------------------------------------------------- lane-by-lane port of the official decode


def official_culane_points(kept: np.ndarray, settings: DecodeSettings) -> list[np.ndarray]:
    """The official decode of the lanes NMS kept, then the CULane prediction writer, one lane at a time
    in normalised coordinates (our port of `predictions_to_pred`, `Lane` and `get_prediction_string`)."""
    prior_ys = np.linspace(1, 0, 72, dtype=np.float32).astype(np.float64)  # a float32 buffer made double
    sample_ys = CULANE_ROWS / settings.ori_height
    result = []
    for lane in kept:
        xs = lane[6:].copy()
        start = min(max(0, int(round(lane[2] * 71))), 71)
        length = int(round(round(lane[5] * 71)))
        end = min(start + length - 1, 71)
        inside = (xs[:start] >= 0) & (xs[:start] <= 1)
        outside_below = ~(inside[::-1].cumprod()[::-1].astype(bool))
        xs[end + 1 :] = -2
        xs[:start][outside_below] = -2
        ys = prior_ys[xs >= 0][::-1]
        xs = xs[xs >= 0][::-1]
        ys = (ys * (settings.ori_height - settings.cut_height) + settings.cut_height) / settings.ori_height
        if len(xs) <= 1:
            continue
        sampled = InterpolatedUnivariateSpline(ys, xs, k=min(3, len(xs) - 1))(sample_ys)
        sampled[(sample_ys < ys.min() - 0.01) | (sample_ys > ys.max() + 0.01)] = -2
        valid = (sampled >= 0) & (sampled < 1)
        points = np.stack([sampled[valid] * settings.ori_width, sample_ys[valid] * settings.ori_height], 1)
        if len(points):
            result.append(points[::-1])
    return result


@pytest.mark.parametrize("seed", range(6))
def test_matches_official_decode(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count = 40
    predictions = np.zeros((count, 78))
    predictions[:, 1] = rng.normal(0, 2, count)
    start_rows = rng.integers(3, 60, count)
    predictions[:, 2] = (start_rows + rng.uniform(-0.45, 0.45, count)) / 71
    predictions[:, 5] = rng.uniform(-3, 72, count) / 71
    slope = rng.uniform(-0.015, 0.015, (count, 1))
    predictions[:, 6:] = rng.uniform(-0.2, 1.2, (count, 1)) + slope * ROWS + rng.normal(0, 0.003, (count, 72))
    settings = DecodeSettings(max_lanes=8, nms_threshold=30)

    lanes, _, _ = decode_lanes(predictions, settings)
    ours = [sample_lane(lane, CULANE_ROWS, settings.ori_width, settings.ori_height) for lane in lanes]

    scores = lane_scores(predictions[:, :2])
    confident = predictions[scores >= settings.conf_threshold]
    keep = lane_nms(
        scores[scores >= settings.conf_threshold],
        confident[:, 2],
        confident[:, 5] * 71,
        confident[:, 6:] * 799,
        thr=settings.nms_threshold,
        top_k=settings.max_lanes,
    )
    expected = official_culane_points(confident[keep], settings)
    ours = [points for points in ours if len(points)]
    assert len(ours) == len(expected) > 0
    for mine, theirs in zip(ours, expected):
        # we fit the spline in pixels, the official code in normalised units: same interpolant, rounding
        # differs by ~1e-4 px on these noisy lanes (the CULane metric truncates to whole pixels)
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-3)
