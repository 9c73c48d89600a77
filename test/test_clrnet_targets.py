"""CLRNet label encoding: lanes in the 800x320 label space to (78,) target rows (layout in `loss.py`),
checked against hand-computed rows, and round-tripped through the decoder on synthetic road scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refine_perception.data.synthetic.road import road_sample
from refine_perception.metrics.culane import culane_f1
from refine_perception.models.clrnet.decode import decode_lanes
from refine_perception.models.clrnet.targets import ABSENT_X, encode_lanes, sample_rows

STRIP = 320 / 71  # pixels between two of the 72 rows


def row_y(k: int | np.ndarray) -> float | np.ndarray:
    """y of row k, written out here rather than taken from the module: 320 at the bottom, 0 at the top."""
    return 320 - np.asarray(k) * STRIP


def encode_one(points: list[tuple[float, float]]) -> np.ndarray:
    targets, kept = encode_lanes([np.array(points, dtype=np.float64)])
    assert targets.shape == (1, 78) and targets.dtype == np.float32 and kept.tolist() == [0]
    return targets[0].astype(np.float64)


def test_sample_rows_bottom_first() -> None:
    rows = sample_rows()
    assert rows.shape == (72,)
    assert rows[0] == 320 and rows[-1] == pytest.approx(0, abs=1e-9)
    np.testing.assert_allclose(rows, row_y(np.arange(72)))


def test_vertical_lane_hand_computed() -> None:
    row = encode_one([(400, 320), (400, 100)])
    # y_k >= 100  <=>  k <= 220 * 71 / 320 = 48.81: rows 0..48
    length = 49
    assert row[2] == 0.0  # starts on the bottom row
    assert row[3] == pytest.approx(400)
    assert row[4] == pytest.approx(0.5, abs=1e-4)  # straight up
    assert row[5] == length
    np.testing.assert_allclose(row[6 : 6 + length], 400, atol=1e-3)
    assert np.all(row[6 + length :] == ABSENT_X)


def test_lane_below_its_lowest_point_follows_the_two_lowest_points() -> None:
    # a straight lane x = 500 - 0.8 (y - 200), annotated only between y = 200 and y = 50
    def line(y: float | np.ndarray) -> float | np.ndarray:
        return 500 - 0.8 * (np.asarray(y) - 200)

    row = encode_one([(line(y), y) for y in (200.0, 150.0, 100.0, 50.0)])
    assert row[2] == 0.0 and row[3] == pytest.approx(line(320), abs=1e-3)  # reaches the bottom: x = 404
    for k in (0, 5, 13, 26):  # y = 320, 297.5, 261.4, 202.8: all below the annotation
        assert row[6 + k] == pytest.approx(line(row_y(k)), abs=1e-3)
    last = math.floor(270 * 71 / 320)  # y_k >= 50 up to row 59
    assert row[5] == last + 1
    np.testing.assert_allclose(row[6 : 6 + last + 1], line(row_y(np.arange(last + 1))), atol=1e-3)


def test_extrapolation_uses_the_lowest_two_points_of_a_curved_lane() -> None:
    # slope -0.8 between the two lowest points, bending away above them: a global fit would differ
    row = encode_one([(500, 200), (516, 180), (560, 120), (640, 50)])
    for k in (0, 10, 20):
        assert row[6 + k] == pytest.approx(500 - 0.8 * (row_y(k) - 200), abs=1e-3)


def test_lane_leaving_the_image_on_the_left_starts_at_the_first_inside_row() -> None:
    # x = 100 - (y - 200): x < 0 below y = 300; y_k <= 300 <=> k >= 20 * 71 / 320 = 4.44
    row = encode_one([(100, 200), (175, 125), (250, 50)])
    start = 5
    assert row[2] == pytest.approx(start / 71)
    assert row[3] == pytest.approx(100 - (row_y(start) - 200), abs=1e-3)
    assert np.all(row[6 : 6 + start] == ABSENT_X)
    top = math.floor(270 * 71 / 320)  # the annotation ends at y = 50: row 59
    assert row[5] == top - start + 1
    assert row[6 + start] >= 0 and np.all(row[6 + top + 1 :] == ABSENT_X)


def test_only_the_first_inside_run_is_kept() -> None:
    # a bump past the right border between y ~ 204 and y ~ 236 (rows 19..25), inside again above
    ys = np.arange(320.0, 59.0, -10.0)
    xs = 650 + 200 * np.exp(-(((ys - 220) / 30) ** 2))
    row = encode_one(list(zip(xs, ys)))
    assert row[2] == 0.0 and row[5] == 19  # rows 0..18: row 18 at x ~ 784, row 19 at x ~ 809
    assert np.all(row[6 : 6 + 19] < 800) and np.all(row[6 + 19 :] == ABSENT_X)


def test_unusable_lanes_are_dropped_and_kept_indices_returned() -> None:
    good = np.array([[300.0, 320.0], [320.0, 100.0]])
    lanes = [
        good,
        np.array([[100.0, 200.0]]),  # one point
        np.array([[100.0, 200.0], [150.0, 200.0], [120.0, 200.0]]),  # three points, one row
        np.array([[-50.0, 320.0], [-40.0, 0.0]]),  # left of the image everywhere
        np.array([[900.0, 320.0], [950.0, 100.0]]),  # right of it
        np.array([[820.0, 3.0], [790.0, 0.0]]),  # inside on the top row only (x = 835 one row down)
        good + [200.0, 0.0],
    ]
    targets, kept = encode_lanes(lanes)
    assert kept.tolist() == [0, 6] and kept.dtype == np.int64
    assert targets.shape == (2, 78)
    assert targets[0, 3] == pytest.approx(300) and targets[1, 3] == pytest.approx(500)
    empty, none_kept = encode_lanes(lanes[1:6])
    assert empty.shape == (0, 78) and empty.dtype == np.float32 and none_kept.tolist() == []


@pytest.mark.parametrize(("lean", "theta"), [(1.0, 0.25), (-1.0, 0.75)])
def test_theta_of_leaning_lanes(lean: float, theta: float) -> None:
    # x changes by one pixel per pixel up: 45 degrees, theta = 1/4 leaning right, 3/4 leaning left
    row = encode_one([(400 - 160 * lean, 320), (400 + 160 * lean, 0)])
    assert row[4] == pytest.approx(theta, abs=1e-4)
    assert (row[4] < 0.5) == (lean > 0)


def fake_outputs(targets: np.ndarray) -> np.ndarray:
    """What a perfect network would output for these targets."""
    out = np.empty((len(targets), 78))
    out[:, 0], out[:, 1] = -5.0, 5.0
    out[:, 2] = targets[:, 2]
    out[:, 3] = targets[:, 3] / 799
    out[:, 4] = targets[:, 4]
    out[:, 5] = targets[:, 5] / 71
    xs = targets[:, 6:]
    out[:, 6:] = np.where(xs == ABSENT_X, -2.0, xs / 799)
    return out


def test_round_trip_through_decode_scores_perfect_f1() -> None:
    preds, gts = [], []
    lanes = 0
    for index in range(10):  # scenes 2, 5 and 9 are lane-less crossings
        sample = road_sample(11, index)
        gt = [lane.image_points for lane in sample.lanes]
        label = [np.column_stack([lane[:, 0] * 800 / 1640, lane[:, 1] - 270]) for lane in gt]
        targets, kept = encode_lanes(label)
        assert kept.tolist() == list(range(len(gt)))
        lanes += len(gt)
        preds.append(decode_lanes(fake_outputs(targets.astype(np.float64))).lanes)
        gts.append(gt)
    assert lanes >= 15
    result = culane_f1(preds, gts, iou_thresholds=(0.5,))
    counts = result.at(0.5)
    assert counts.tp == lanes and result.f1(0.5) == 1.0, counts


@pytest.mark.parametrize(
    ("lane", "message"),
    [(np.zeros((4, 3)), "shape"), (np.zeros(4), "shape"), (np.array([[1.0, 2.0], [np.nan, 3.0]]), "NaN")],
)
def test_malformed_lanes_raise(lane: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_lanes([np.array([[1.0, 300.0], [2.0, 100.0]]), lane])
