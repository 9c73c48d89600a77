"""CULane F1 (official C++ protocol and the Python re-implementation) and TuSimple LaneEval: hand-computed
cases, the edge cases of both protocols, and the fast CULane code against a literal slow port."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from scipy.interpolate import splev, splprep
from scipy.optimize import linear_sum_assignment

from refine_perception.data.formats.lanes import AnnotationError
from refine_perception.data.formats.tusimple import TuSimpleRecord, read_tusimple
from refine_perception.metrics.culane import (
    CULaneResult,
    LaneCounts,
    culane_f1,
    is_true_positive,
    lane_ious,
    lane_pixels,
    matched_ious,
    natural_spline,
    official_matching,
)
from refine_perception.metrics.lane_matching import AttributeTally, true_positive_pairs
from refine_perception.metrics.tusimple import (
    TuSimpleResult,
    image_scores,
    lane_angle,
    tusimple_eval,
    tusimple_eval_with_lanes,
)
from refine_perception.models.clrnet.decode import sample_lane

H, W = 590, 1640


def vertical(x: float, top: float = -50.0, bottom: float = 650.0) -> np.ndarray:
    """A 2-point vertical lane; by default it runs past both canvas edges, so no round cap is visible."""
    return np.array([[x, bottom], [x, top]])


# ----------------------------------------------------------------- slow literal ports of the reference tools


def slow_official_spline(points: np.ndarray) -> list[tuple[np.float32, np.float32]]:
    """Spline::splineInterpTimes(lane, 50) line by line, scalars only (float32 where C++ has Point2f)."""
    p = [(np.float32(x), np.float32(y)) for x, y in points]
    n = len(p)
    dx = [float(p[i + 1][0] - p[i][0]) for i in range(n - 1)]  # float32 subtraction, as in C++
    dy = [float(p[i + 1][1] - p[i][1]) for i in range(n - 1)]
    h = [math.sqrt(dx[i] ** 2 + dy[i] ** 2) for i in range(n - 1)]
    A = [h[i] for i in range(n - 2)]
    B = [2 * (h[i] + h[i + 1]) for i in range(n - 2)]
    C = [h[i + 1] for i in range(n - 2)]
    Dx = [6 * (dx[i + 1] / h[i + 1] - dx[i] / h[i]) for i in range(n - 2)]
    Dy = [6 * (dy[i + 1] / h[i + 1] - dy[i] / h[i]) for i in range(n - 2)]
    C[0] = C[0] / B[0]
    Dx[0] = Dx[0] / B[0]
    Dy[0] = Dy[0] / B[0]
    for i in range(1, n - 2):
        tmp = B[i] - A[i] * C[i - 1]
        C[i] = C[i] / tmp
        Dx[i] = (Dx[i] - A[i] * Dx[i - 1]) / tmp
        Dy[i] = (Dy[i] - A[i] * Dy[i - 1]) / tmp
    Mx, My = [0.0] * n, [0.0] * n
    Mx[n - 2], My[n - 2] = Dx[n - 3], Dy[n - 3]
    for i in range(n - 4, -1, -1):
        Mx[i + 1] = Dx[i] - C[i] * Mx[i + 2]
        My[i + 1] = Dy[i] - C[i] * My[i + 2]
    Mx[0] = Mx[n - 1] = My[0] = My[n - 1] = 0.0
    out = []
    for i in range(n - 1):
        ax, ay = float(p[i][0]), float(p[i][1])
        bx = dx[i] / h[i] - (2 * h[i] * Mx[i] + h[i] * Mx[i + 1]) / 6
        by = dy[i] / h[i] - (2 * h[i] * My[i] + h[i] * My[i + 1]) / 6
        cx, cy = Mx[i] / 2, My[i] / 2
        ddx, ddy = (Mx[i + 1] - Mx[i]) / (6 * h[i]), (My[i + 1] - My[i]) / (6 * h[i])
        delta = h[i] / 50
        for k in range(50):
            t = delta * k
            out.append(
                (
                    np.float32(ax + bx * t + cx * (t * t) + ddx * (t * t * t)),
                    np.float32(ay + by * t + cy * (t * t) + ddy * (t * t * t)),
                )
            )
    out.append(p[-1])
    return out


def slow_official_mask(lane: np.ndarray) -> np.ndarray:
    """LaneCompare: full 590x1640 canvas, one cv::line per consecutive pair, Point2f -> Point by cvRound."""
    img = np.zeros((H, W), np.uint8)
    points = [tuple(np.float32(v) for v in q) for q in lane] if len(lane) == 2 else slow_official_spline(lane)
    pixels = [(round(float(x)), round(float(y))) for x, y in points]  # Python's round: half to even
    for a, b in zip(pixels[:-1], pixels[1:]):
        cv2.line(img, a, b, 1, 30)
    return img


def slow_official_iou(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(b) < 2:
        return 0.0
    m1, m2 = slow_official_mask(a), slow_official_mask(b)
    inter = float((m1 * m2).sum())
    return inter / (float(m1.sum()) + float(m2.sum()) - inter)


def slow_python_counts(
    pred: list[np.ndarray], anno: list[np.ndarray], thresholds: list[float]
) -> list[list[int]]:
    """CLRNet's culane_metric(official=True) with its file loader's `len(lane) >= 2` filter."""
    pred = [lane for lane in pred if len(lane) >= 2]
    anno = [lane for lane in anno if len(lane) >= 2]

    def interp(points: np.ndarray, n: int = 5) -> np.ndarray:
        tck, u = splprep([points[:, 0], points[:, 1]], s=0, t=n, k=min(3, len(points) - 1))
        return np.array(splev(np.linspace(0.0, 1.0, (len(u) - 1) * n + 1), tck)).T

    def draw(lane: np.ndarray) -> np.ndarray:
        img = np.zeros((H, W, 3), np.uint8)
        lane = lane.astype(np.int32)
        for p1, p2 in zip(lane[:-1], lane[1:]):
            cv2.line(img, tuple(map(int, p1)), tuple(map(int, p2)), color=(255, 255, 255), thickness=30)
        return img > 0

    xs = [draw(interp(lane)) for lane in pred]
    ys = [draw(interp(lane)) for lane in anno]
    ious = np.zeros((len(xs), len(ys)))
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            union = (x | y).sum()  # 0 when both lanes are off the canvas: CLRNet's NaN, our documented 0
            ious[i, j] = (x & y).sum() / union if union else 0.0
    rows, cols = linear_sum_assignment(1 - ious)
    out = []
    for thr in thresholds:
        tp = int((ious[rows, cols] > thr).sum())
        out.append([tp, len(pred) - tp, len(anno) - tp])
    return out


def random_lane(rng: np.random.Generator) -> np.ndarray:
    """Lane-like polylines of 1 to ~30 points, some leaving the canvas, a few nearly horizontal."""
    kind = rng.random()
    if kind < 0.05:
        return rng.uniform([0, 300], [W, H], size=(1, 2))
    n = 2 if kind < 0.2 else int(rng.integers(3, 30))
    y0 = rng.uniform(450, 640)
    ys = y0 - np.cumsum(rng.uniform(4, 16, n)) + rng.uniform(4, 16)
    x0, slope, bend = rng.uniform(-150, W + 150), rng.uniform(-2.5, 2.5), rng.normal(0, 2e-3)
    xs = x0 + slope * (y0 - ys) + bend * (y0 - ys) ** 2 + rng.normal(0, 0.7, n)
    if rng.random() < 0.1:
        xs, ys = x0 + np.cumsum(rng.uniform(5, 20, n)), ys * 0.05 + 400  # shallow
    return np.round(np.stack([xs, ys], axis=1), 3)


def random_image(rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(ground truth, predictions): 1-4 lanes, most predicted with a shift and jitter, plus strays."""
    gts = [random_lane(rng) for _ in range(rng.integers(1, 5))]
    preds = [
        gt + np.c_[rng.normal(rng.normal(0, 6), 1.5, len(gt)), np.zeros(len(gt))]
        for gt in gts
        if rng.random() < 0.8
    ]
    preds += [random_lane(rng) for _ in range(rng.integers(0, 2))]
    return gts, preds


# ------------------------------------------------------------------------------- CULane: hand computations


def test_two_vertical_strips_ten_pixels_apart() -> None:
    # OpenCV paints a 30-px line over columns x-15..x+15: 31 columns, all 590 rows when the lane runs past
    # the top and bottom of the canvas. Strips 10 px apart share 31-10 = 21 columns and together cover
    # 31+10 = 41, so IoU = 21/41 = 0.5122 > 0.5 (a TP at 0.5, not at 0.55).
    ious = lane_ious([vertical(100)], [vertical(110)])
    assert ious.shape == (1, 1) and ious[0, 0] == pytest.approx(21 / 41, abs=1e-12)
    result = culane_f1([[vertical(110)]], [[vertical(100)]], iou_thresholds=[0.5, 0.55])
    assert result.at(0.5) == LaneCounts(1, 0, 0) and result.at(0.55) == LaneCounts(0, 1, 1)


def test_tp_needs_iou_strictly_above_threshold() -> None:
    # One column apart: IoU = 30/32 = 0.9375 exactly; a TP at 0.93, not at 0.9375 itself.
    result = culane_f1([[vertical(101)]], [[vertical(100)]], iou_thresholds=[0.93, 0.9375])
    assert [c.tp for c in result.counts["all"]] == [1, 0]


def test_f1_over_images_and_categories() -> None:
    # image 1 ("normal"): GT at x=100 and x=400, predictions at x=105 (IoU 26/36 = 0.722 with x=100) and
    #   x=700 (touches nothing): TP 1, FP 1, FN 1 at IoU 0.5; TP 0, FP 2, FN 2 at 0.75.
    # image 2 ("cross"): no GT, one prediction: FP 1.  image 3 ("night"): one GT, no prediction: FN 1.
    # At 0.5: TP 1, FP 2, FN 2 -> P = R = 1/3 -> F1 = 1/3.  At 0.75: F1 = 0.  mF1(0.5, 0.75) = 1/6.
    preds = [[vertical(105), vertical(700)], [vertical(300)], []]
    gts = [[vertical(100), vertical(400)], [], [vertical(900)]]
    result = culane_f1(preds, gts, iou_thresholds=[0.5, 0.75], categories=["normal", "cross", "night"])
    assert result.at(0.5) == LaneCounts(1, 2, 2)
    assert result.f1(0.5) == pytest.approx(1 / 3) and result.f1(0.75) == 0.0
    assert result.mf1() == pytest.approx(1 / 6)
    assert list(result.counts) == ["all", "normal", "cross", "night"]
    assert result.at(0.5, "normal") == LaneCounts(1, 1, 1) and result.f1(0.5, "normal") == 0.5
    assert result.at(0.5, "cross") == LaneCounts(0, 1, 0)  # CULane reports the FP count for "cross"
    assert result.at(0.5, "night") == LaneCounts(0, 0, 1)
    assert result.images == {"all": 3, "normal": 1, "cross": 1, "night": 1}
    assert lane_ious([vertical(100)], [vertical(105)])[0, 0] == pytest.approx(26 / 36)


def test_default_thresholds_give_f1_50_75_and_mf1() -> None:
    # Predictions 0..9 px off a vertical GT: IoU (31-d)/(31+d) = 1, .9375, .8788, .8235, .7714, .7222, .675,
    # .6279, .5833, .5405, one image each. At IoU thr t every image with IoU > t is a TP and the others give
    # one FP and one FN, so F1 = #TP / 10.
    preds = [[vertical(100 + d)] for d in range(10)]
    gts = [[vertical(100)] for _ in range(10)]
    result = culane_f1(preds, gts)
    assert result.thresholds == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    ious = [(31 - d) / (31 + d) for d in range(10)]
    expected = [sum(iou > t for iou in ious) / 10 for t in result.thresholds]
    assert [result.f1(t) for t in result.thresholds] == pytest.approx(expected)
    assert result.f1(0.5) == 1.0 and result.f1(0.75) == pytest.approx(0.5)
    assert result.f1(0.95) == pytest.approx(0.1)
    assert result.mf1() == pytest.approx(np.mean(expected))
    table = str(result)
    assert "F1@50" in table and "F1@95" in table and "mF1" in table
    json.dumps(result.to_dict())  # JSON-ready


# --------------------------------------------------------------------------------- CULane: edge cases


def test_empty_predictions_and_empty_ground_truth() -> None:
    result = culane_f1([[], [], [vertical(5)]], [[], [vertical(5), vertical(600)], []], iou_thresholds=[0.5])
    assert result.at(0.5) == LaneCounts(0, 1, 2)
    assert result.f1() == 0.0 and result.at(0.5).precision == 0.0
    assert culane_f1([], [], iou_thresholds=[0.5]).at(0.5) == LaneCounts(0, 0, 0)


def test_more_predictions_than_ground_truth() -> None:
    # Three predictions, one GT: only the best one (x=102, IoU 29/33) is matched; two FPs.
    preds = [[vertical(160), vertical(102), vertical(95)]]
    result = culane_f1(preds, [[vertical(100)]], iou_thresholds=[0.5])
    assert result.at(0.5) == LaneCounts(1, 2, 0)
    assert matched_ious(lane_ious([vertical(100)], preds[0])).tolist() == pytest.approx([29 / 33])


def test_lanes_with_fewer_than_two_points_official_vs_python() -> None:
    # The C++ tool keeps a 1-point lane (IoU 0 with everything: an FP or FN); the Python tool's loader
    # drops it before counting.
    dot = np.array([[300.0, 500.0]])
    preds, gts = [[vertical(100), dot]], [[vertical(100), np.zeros((0, 2))]]
    official = culane_f1(preds, gts, iou_thresholds=[0.5])
    python = culane_f1(preds, gts, iou_thresholds=[0.5], mode="python")
    assert official.at(0.5) == LaneCounts(1, 1, 1)
    assert python.at(0.5) == LaneCounts(1, 0, 0)
    assert lane_ious([dot], [dot]).tolist() == [[0.0]]


def test_off_image_lanes() -> None:
    # Entirely left of the canvas: drawn nowhere, IoU 0, counted as an FP. Partly off-image: clipped, and
    # the visible part is compared (x=-10: columns 0..5 of 0..115 -> IoU 6/31 with x=5 whose strip is 0..20).
    assert lane_ious([vertical(100)], [vertical(-500)]).tolist() == [[0.0]]
    assert lane_ious([vertical(5)], [vertical(-10)])[0, 0] == pytest.approx(6 / 21)
    result = culane_f1([[vertical(100), vertical(-500)]], [[vertical(100)]], iou_thresholds=[0.5])
    assert result.at(0.5) == LaneCounts(1, 1, 0)


def test_repeated_points_are_merged() -> None:
    lane = np.array([[500.0, 590], [510, 560], [510, 560], [530, 500], [560, 420]])
    assert np.array_equal(lane_ious([lane], [lane[[0, 1, 3, 4]]]), [[1.0]])
    assert lane_pixels([lane])[0] is not None


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="image 1: prediction lane 0: contains NaN"):
        culane_f1([[], [np.array([[1.0, np.nan], [2, 3]])]], [[], []])
    with pytest.raises(ValueError, match=r"image 0: ground-truth lane 0: expected shape \(N, 2\)"):
        culane_f1([[]], [[np.zeros((3, 3))]])
    with pytest.raises(ValueError, match="2 prediction images for 1"):
        culane_f1([[], []], [[]])
    with pytest.raises(ValueError, match="mode must be"):
        culane_f1([[]], [[]], mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="iou_thresholds"):
        culane_f1([[]], [[]], iou_thresholds=[1.5])


# -------------------------------------------------------------------------- CULane: official vs python


def test_rounding_differs_between_modes() -> None:
    # GT at x=101.5, prediction at x=101. C++: Point2f -> Point rounds half to even, 101.5 -> 102, one column
    # off: IoU 30/32 = 0.9375. Python: int32 truncation, 101.5 -> 101: identical strips, IoU 1.
    gt, pred = [vertical(101.5)], [vertical(101.0)]
    assert lane_ious(gt, pred, mode="official")[0, 0] == pytest.approx(30 / 32)
    assert lane_ious(gt, pred, mode="python")[0, 0] == 1.0
    assert culane_f1([pred], [gt], iou_thresholds=[0.95]).at(0.95).tp == 0
    assert culane_f1([pred], [gt], iou_thresholds=[0.95], mode="python").at(0.95).tp == 1


def test_matching_tolerance_differs_between_modes() -> None:
    # IoU (GT x prediction) = [[0.752, 0.748], [0, 0]]. Optimal: GT0-P0 (0.752). The C++ Kuhn-Munkres labels
    # rows with their maxima (0.752, 0); GT0 takes P0; GT1 finds P0 tight (slack 0), P0's owner GT0 then
    # finds P1 tight too (0.752 - 0.748 = 0.004 < 1e-2) and moves there: GT0-P1 (0.748), GT1-P0 (0).
    # At IoU 0.75 the official count has no TP, the exact assignment one.
    similarity = np.array([[0.752, 0.748], [0.0, 0.0]])
    assert official_matching(similarity).tolist() == [1, 0]
    assert sorted(matched_ious(similarity, "official")) == [0.0, 0.748]
    assert sorted(matched_ious(similarity, "python")) == [0.0, 0.752]


def test_official_matching_transposes_when_more_ground_truth() -> None:
    # 3 GT x 2 predictions: the C++ puts the predictions on the left; each GT row gets its column or -1.
    similarity = np.array([[0.1, 0.8], [0.9, 0.2], [0.3, 0.3]])
    assert official_matching(similarity).tolist() == [1, 0, -1]
    assert official_matching(np.zeros((2, 0))).tolist() == [-1, -1]


def test_official_matching_finds_the_optimum_when_it_is_clear() -> None:
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        rows, cols = (int(v) for v in rng.integers(1, 6, size=2))
        sim = np.round(rng.random((rows, cols)), 2)
        k = min(rows, cols)
        totals = {}
        for perm in itertools.permutations(range(max(rows, cols)), k):
            pairs = [(i, perm[i]) for i in range(k)] if rows <= cols else [(perm[j], j) for j in range(k)]
            totals[tuple(pairs)] = sum(sim[i, j] for i, j in pairs)
        ranked = sorted(totals.values(), reverse=True)
        if len(ranked) > 1 and ranked[0] - ranked[1] < 0.05 * k:
            continue  # near-ties: the 1e-2 tolerance may legitimately pick another matching
        match = official_matching(sim)
        assert sum(sim[i, j] for i, j in enumerate(match) if j >= 0) == pytest.approx(ranked[0])
        checked += 1
    assert checked > 100



# -------------------------------------------------------------- matched lanes: one rule for every caller

# A prediction running down the whole image at x=800, as both callers see it after sampling it at CULane's
# rows (270, 278, ... 582 of a 1640x590 frame), and a slanted ground truth whose drawn masks meet it with
# IoU exactly 6119/12238 = 0.5 (found by search); the same truth one row longer gives 0.5017.
PRED_AT_800 = np.array([[800.0, 650.0], [800.0, 0.0]])
TRUTH_AT_HALF = np.array([[810.0, 650.0], [806.0, 339.0]])
TRUTH_ABOVE_HALF = np.array([[410.0, 650.0], [406.0, 338.0]])
PRED_AT_400 = np.array([[400.0, 650.0], [400.0, 0.0]])
ABOVE_THE_CUT = np.array([[100.0, 200.0], [100.0, 100.0]])  # no CULane row: dropped by both callers


def test_true_positive_pairs_need_iou_strictly_above_the_threshold() -> None:
    ious = np.array([[0.5, 0.0, 0.0], [0.0, np.nextafter(0.5, 1.0), 0.0], [0.0, 0.0, 0.9]])
    assert true_positive_pairs(ious) == [(1, 1), (2, 2)]
    assert true_positive_pairs(ious, 0.9) == []
    assert true_positive_pairs(np.zeros((2, 0))) == [] == true_positive_pairs(np.zeros((0, 3)))
    assert is_true_positive(np.array([0.5, 0.51]), 0.5).tolist() == [False, True]
    tally = AttributeTally()
    tally.add([(0, 1), (1, 0)], truth_types=[1, -1], truth_colors=[2, 1], pred_types=[3, 1], pred_colors=[1, 1],
              unlabelled=-1)
    assert tally == AttributeTally(type_right=1, type_total=1, color_right=1, color_total=2)
    assert AttributeTally().type_accuracy is None and tally.color_accuracy == 0.5


def _frame(lanes: list[np.ndarray], types: list[int], colors: list[int], scores: list[float] | None = None,
           width: int = W, height: int = H) -> SimpleNamespace:
    """A LaneArray-like message (the replay scorer only reads fields)."""
    return SimpleNamespace(image_width=width, image_height=height, lanes=[
        SimpleNamespace(image_points=[SimpleNamespace(x=x, y=y) for x, y in lane], type=kind, color=colour,
                        track_id=-1, score=1.0 if scores is None else scores[k])
        for k, (lane, kind, colour) in enumerate(zip(lanes, types, colors))])


def test_both_callers_count_type_and_colour_over_the_f1_true_positives() -> None:
    """The replay scorer (evaluation/lanes.py) and training's validation (training/lane_eval.py) see the
    same image: one truth at IoU exactly 0.5 with its prediction (not a TP of F1@50, so its right type and
    colour are not counted) and one at 0.5017 (a TP, wrong type, right colour). The prediction list starts
    with a lane both drop for lack of rows, so the attributes must follow the lanes that are kept."""
    from refine_perception.evaluation.lanes import score_lane_frames
    from refine_perception.models.clrnet.predict import LanePrediction
    from refine_perception.training.lane_data import LaneRecord
    from refine_perception.training.lane_eval import score_culane

    rows = np.arange(270, H, 8)
    at_half = lane_ious([TRUTH_AT_HALF], [sample_lane(PRED_AT_800, rows, W, H)])[0, 0]
    above = lane_ious([TRUTH_ABOVE_HALF], [sample_lane(PRED_AT_400, rows, W, H)])[0, 0]
    assert at_half == 0.5 and 0.5 < above < 0.502
    truths, truth_types, truth_colors = [TRUTH_AT_HALF, TRUTH_ABOVE_HALF], [1, 2], [1, 2]
    preds, pred_types, pred_colors = [ABOVE_THE_CUT, PRED_AT_800, PRED_AT_400], [2, 1, 1], [2, 1, 2]

    replay = score_lane_frames([_frame(truths, truth_types, truth_colors)], [_frame(preds, pred_types, pred_colors)])

    prediction = LanePrediction(preds, np.ones(3), np.array(pred_types), np.ones(3), np.array(pred_colors), np.ones(3))
    record = LaneRecord(np.zeros((H, W, 3), np.uint8), tuple(truths), tuple(truth_types), tuple(truth_colors), None, "x")
    training, tally = score_culane(_Predictor(prediction, SimpleNamespace(cut_height=270)), [record], batch_size=1)

    expected = AttributeTally(type_right=0, type_total=1, color_right=1, color_total=1)
    assert replay.attributes == tally == expected
    assert replay.culane.at(0.5) == training.at(0.5) == LaneCounts(1, 1, 1)
    assert replay.per_frame[0].tp == 1
    assert replay.pr_curve[0][2] == 0.5  # recall at the lowest score threshold: the same one TP of two


class _Predictor:
    """A LanePredictor stand-in returning one fixed prediction per image."""

    def __init__(self, prediction: object, settings: object) -> None:
        self.prediction, self.settings = prediction, settings

    def __call__(self, images: list[np.ndarray]) -> list[object]:
        return [self.prediction for _ in images]

# ------------------------------------------------------------------- CULane: fast == literal slow port


def test_batched_spline_equals_the_literal_port() -> None:
    rng = np.random.default_rng(7)
    lanes = [lane for lane in (random_lane(rng) for _ in range(200)) if len(lane) >= 3]
    for n in sorted({len(lane) for lane in lanes}):
        group = [lane for lane in lanes if len(lane) == n]
        fast = natural_spline(np.stack(group).astype(np.float32))
        for lane, curve in zip(group, fast):
            assert np.array_equal(curve, np.array(slow_official_spline(lane), dtype=np.float32))


def test_fast_official_ious_equal_the_literal_port() -> None:
    rng = np.random.default_rng(11)
    compared = overlapping = 0
    for _ in range(8):
        gts, preds = random_image(rng)
        slow = np.array([[slow_official_iou(g, p) for p in preds] for g in gts]).reshape(len(gts), len(preds))
        assert np.array_equal(lane_ious(gts, preds), slow)
        compared, overlapping = compared + slow.size, overlapping + np.count_nonzero(slow)
    assert compared > 30 and overlapping > 15


def test_fast_python_mode_equals_the_clrnet_code() -> None:
    rng = np.random.default_rng(5)
    thresholds = [0.5, 0.75, 0.9]
    images = [random_image(rng) for _ in range(10)]
    expected = np.sum([slow_python_counts(preds, gts, thresholds) for gts, preds in images], axis=0)
    preds, gts = [p for _, p in images], [g for g, _ in images]
    result = culane_f1(preds, gts, iou_thresholds=thresholds, mode="python")
    assert [[c.tp, c.fp, c.fn] for c in result.counts["all"]] == expected.tolist()
    assert expected[0][0] > 10  # the case is not trivial: many true positives at 0.5


def test_worker_processes_give_the_same_counts() -> None:
    rng = np.random.default_rng(2)
    gts = [[vertical(x) for x in rng.uniform(0, W, 2)] for _ in range(150)]
    preds = [[lane + [rng.normal(0, 8), 0] for lane in image] for image in gts]
    one = culane_f1(preds, gts, workers=1)
    two = culane_f1(preds, gts, workers=2)
    assert one.counts == two.counts and isinstance(two, CULaneResult)


# ------------------------------------------------------------------------------------------ TuSimple

ROWS = np.arange(160, 720, 10)  # 56 h_samples


def test_tusimple_threshold_is_20_px_on_a_vertical_lane() -> None:
    # Vertical GT: slope 0, tolerance 20 px. |diff| = 19 on every row -> accuracy 1; 20 is not < 20 -> 0.
    gt = np.full((1, 56), 500.0)
    assert image_scores(gt + 19, gt, ROWS) == (1.0, 0.0, 0.0)
    assert image_scores(gt + 20, gt, ROWS) == (0.0, 1.0, 1.0)


def test_tusimple_threshold_grows_with_the_lane_angle() -> None:
    # x = 300 + (y - 160): slope dx/dy = 1, theta = 45 deg, tolerance 20 / cos 45 = 28.28 px.
    gt = (300.0 + (ROWS - 160))[None]
    assert lane_angle(gt[0], ROWS) == pytest.approx(math.pi / 4)
    one_point = np.full(56, -2.0)
    one_point[30] = 400.0
    assert lane_angle(one_point, ROWS) == 0.0  # fewer than 2 points: theta = 0, tolerance 20 px
    assert image_scores(gt + 28, gt, ROWS)[0] == 1.0
    assert image_scores(gt + 29, gt, ROWS)[0] == 0.0


def test_tusimple_missing_points_count_on_both_sides() -> None:
    # GT has points on the lower 40 rows only. A prediction with the same x there but points on all 56
    # rows scores 40/56 = 0.714 (< 0.85: a miss, and the prediction is an FP); one that is -2 on the upper
    # 16 rows scores 56/56 (rows where both are missing count as hits).
    gt = np.full((1, 56), 640.0)
    gt[0, :16] = -2
    full = np.full((1, 56), 640.0)
    assert image_scores(full, gt, ROWS) == pytest.approx((40 / 56, 1.0, 1.0))
    assert image_scores(gt.copy(), gt, ROWS) == (1.0, 0.0, 0.0)


def test_tusimple_more_than_four_lanes() -> None:
    # 5 GT lanes, 4 predicted exactly, 1 missed: line accuracies [1, 1, 1, 1, 0]. With > 4 lanes one miss
    # is forgiven (FN 0) and the lowest accuracy dropped: accuracy (4 - 0) / 4 = 1; FP = 4 - 4 = 0.
    gt = np.array([np.full(56, x) for x in (100.0, 350.0, 600.0, 850.0, 1100.0)])
    assert image_scores(gt[:4], gt, ROWS) == (1.0, 0.0, 0.0)
    # Two missed of 5: FN (2 - 1) / 4 = 0.25, accuracy (3 + 0 + 0 - 0) / 4 = 0.75.
    assert image_scores(gt[:3], gt, ROWS) == (0.75, 0.0, 0.25)


def test_tusimple_penalties() -> None:
    gt = np.array([np.full(56, 300.0), np.full(56, 900.0)])
    four = np.array([np.full(56, x) for x in (300.0, 900.0, 600.0, 1200.0)])
    assert image_scores(four, gt, ROWS) == (1.0, 0.5, 0.0)  # 4 <= 2 + 2 predictions: scored
    five = np.vstack([four, np.full((1, 56), 50.0)])
    assert image_scores(five, gt, ROWS) == (0.0, 0.0, 1.0)  # 5 > 2 + 2
    assert image_scores(gt, gt, ROWS, run_time=200) == (1.0, 0.0, 0.0)
    assert image_scores(gt, gt, ROWS, run_time=200.5) == (0.0, 0.0, 1.0)
    assert image_scores(np.zeros((0, 56)), gt, ROWS) == (0.0, 0.0, 1.0)


def test_tusimple_one_prediction_can_match_two_lanes() -> None:
    # GT lanes 10 px apart are both within 20 px of one prediction: matched = 2, FP = 1 - 2 = -1 (LaneEval).
    gt = np.array([np.full(56, 500.0), np.full(56, 510.0)])
    assert image_scores(np.full((1, 56), 505.0), gt, ROWS) == (1.0, -1.0, 0.0)


def test_tusimple_dataset_and_paper_f1() -> None:
    # Image A: perfect. Image B: one GT, a good prediction and a spurious one: accuracy 1, FP 1/2, FN 0.
    # Means: Accuracy 1, FP 0.25, FN 0; CLRNet's F1: TP = 0.75, P = 0.75, R = 0.75 / 0.75 = 1,
    # F1 = 2 * 0.75 / 1.75 = 0.857.
    lane = np.full((1, 56), 640.0)
    gts = [TuSimpleRecord("a.jpg", ROWS, lane), TuSimpleRecord("b.jpg", ROWS, lane)]
    preds = [
        TuSimpleRecord("b.jpg", ROWS, np.vstack([lane, lane + 300]), run_time=5.0),
        TuSimpleRecord("a.jpg", ROWS, lane, run_time=5.0),
    ]
    result = tusimple_eval(preds, gts)
    assert (result.accuracy, result.fp, result.fn, result.images) == (1.0, 0.25, 0.0, 2)
    assert result.f1 == pytest.approx(2 * 0.75 / 1.75)
    assert "Acc" in str(result) and result.to_dict()["F1"] == pytest.approx(0.857142857)
    with pytest.raises(ValueError, match="1 predictions for 2"):
        tusimple_eval(preds[:1], gts)
    with pytest.raises(ValueError, match="'c.jpg', which is not in the ground truth"):
        tusimple_eval([preds[0], TuSimpleRecord("c.jpg", ROWS, lane)], gts)
    with pytest.raises(ValueError, match=r"a.jpg: prediction lanes have shape \(1, 48\)"):
        tusimple_eval([preds[0], TuSimpleRecord("a.jpg", ROWS[8:], lane[:, 8:])], gts)


def test_tusimple_with_lanes_leaves_laneless_images_out_and_counts_their_false_lanes() -> None:
    lane = np.full((1, 56), 640.0)
    none = np.zeros((0, 56))
    pairs = [(TuSimpleRecord("a.jpg", ROWS, lane), TuSimpleRecord("a.jpg", ROWS, lane)),
             (TuSimpleRecord("b.jpg", ROWS, none), TuSimpleRecord("b.jpg", ROWS, none)),
             (TuSimpleRecord("c.jpg", ROWS, np.vstack([lane, lane + 300])), TuSimpleRecord("c.jpg", ROWS, none))]
    # LaneEval itself scores a lane-less image 0 even when nothing is predicted there
    assert tusimple_eval([p for p, _ in pairs], [g for _, g in pairs]).accuracy == pytest.approx(1 / 3)
    result, laneless = tusimple_eval_with_lanes([p for p, _ in pairs], [g for _, g in pairs])
    assert (result.accuracy, result.fp, result.fn, result.images) == (1.0, 0.0, 0.0, 1)
    assert laneless == {"images": 2, "false_lanes": 2, "images_with_false_lanes": 1}


def test_tusimple_f1_reproduces_clrnet_readme() -> None:
    # CLRNet R18 TuSimple: FDR (FP) 2.28, FNR (FN) 1.92 -> reported F1 97.89.
    # P = 0.9772, R = 0.9772 / (0.9772 + 0.0192) = 0.98073, F1 = 2PR / (P + R) = 0.97896.
    assert TuSimpleResult(0.9684, 0.0228, 0.0192, 2782).f1 == pytest.approx(0.97896, abs=1e-5)


def test_tusimple_on_the_fixture_files() -> None:
    # Image 1: all 4 lanes predicted 3.5 px off -> perfect. Image 3: 3 lanes 2 px off plus one spurious
    # lane -> accuracy 1, FP 1/4. Image 2: 5 GT lanes, the 3 middle ones predicted 6.25 px off, the two
    # outer ones missed -> FN (2 - 1) / 4 = 1/4 (one miss forgiven with > 4 lanes), FP 0.
    fixtures = Path(__file__).parent / "fixtures" / "lanes" / "tusimple"
    gts = read_tusimple(fixtures / "label_data.json")
    preds = read_tusimple(fixtures / "predictions.json", prediction=True)
    per_image = [image_scores(p.xs, g.xs, g.h_samples, p.run_time or 0.0) for p, g in zip(preds, gts)]
    assert per_image[0] == (1.0, 0.0, 0.0) and per_image[2] == (1.0, 0.25, 0.0)
    assert per_image[1][1:] == (0.0, 0.25) and 0.75 <= per_image[1][0] < 1.0
    result = tusimple_eval(preds, gts)
    assert result.fp == pytest.approx(0.25 / 3) and result.fn == pytest.approx(0.25 / 3)
    assert result.accuracy == pytest.approx((2.0 + per_image[1][0]) / 3)


def test_tusimple_official_submission_form_takes_the_rows_from_the_ground_truth(tmp_path: Path) -> None:
    # TuSimple's own evaluator and CLRNet's writer use {raw_file, lanes, run_time}: no h_samples.
    fixtures = Path(__file__).parent / "fixtures" / "lanes" / "tusimple"
    gts = read_tusimple(fixtures / "label_data.json")
    with_rows = read_tusimple(fixtures / "predictions.json", prediction=True)
    docs = [json.loads(line) for line in (fixtures / "predictions.json").read_text().splitlines()]
    for doc in docs:
        del doc["h_samples"]
    submission = tmp_path / "submission.json"
    submission.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    preds = read_tusimple(submission, prediction=True)
    assert all(pred.h_samples is None for pred in preds)
    assert [pred.xs.tolist() for pred in preds] == [pred.xs.tolist() for pred in with_rows]
    assert tusimple_eval(preds, gts) == tusimple_eval(with_rows, gts)
    assert json.loads(preds[0].to_json()).keys() == {"raw_file", "lanes", "run_time"}
    with pytest.raises(ValueError, match="without h_samples has no rows of its own"):
        preds[0].lanes()
    with pytest.raises(AnnotationError, match=r"missing key\(s\) h_samples"):
        read_tusimple(submission)  # ground truth still needs its rows

    # A prediction that states other rows than its ground truth is not silently scored at the GT's rows.
    shifted = TuSimpleRecord(gts[0].raw_file, gts[0].h_samples + 5, with_rows[0].xs, 5.0)
    with pytest.raises(ValueError, match=rf"{gts[0].raw_file}: the prediction's h_samples \(165\.\.715, 56 rows\) "
                       r"differ from the ground truth's \(160\.\.710, 56 rows\)"):
        tusimple_eval([shifted, *with_rows[1:]], gts)
    short = TuSimpleRecord(gts[0].raw_file, None, with_rows[0].xs[:, :10], 5.0)
    with pytest.raises(ValueError, match=r"prediction lanes have shape \(4, 10\), expected \(lanes, 56\)"):
        tusimple_eval([short, *with_rows[1:]], gts)
    ragged = tmp_path / "ragged.json"
    ragged.write_text(json.dumps({"raw_file": "a.jpg", "lanes": [[1, 2, 3], [1, 2]], "run_time": 1}) + "\n")
    with pytest.raises(AnnotationError, match="lane 1 has 2 x values but lane 0 has 3"):
        read_tusimple(ragged, prediction=True)
