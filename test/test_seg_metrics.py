"""Segmentation metrics: hand-computed cases for COCO mask AP, Boundary IoU / Boundary AP, boundary F,
Cityscapes AP and semantic IoU, and the vectorised Cityscapes AP and the semantic confusion against
cityscapesscripts' own evaluators on random cases written in the official file layout."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from refine_perception.core import rle
from refine_perception.data.formats.lanes import AnnotationError
from refine_perception.metrics.boundary import (
    SemanticBoundaryF,
    boundary_f_score,
    boundary_iou,
    boundary_width,
    label_boundaries,
    mask_boundary,
    tolerance_from_ratio,
)
from refine_perception.metrics.cityscapes_ap import (
    EVAL_LABELS,
    cityscapes_ap,
    cityscapes_ap_matrix,
    read_cityscapes_predictions,
    write_cityscapes_predictions,
)
from refine_perception.metrics.coco_ap import coco_boundary_ap, coco_mask_ap
from refine_perception.metrics.instances import GtInstance, PredInstance, foreground_pixels, to_mask, to_rle
from refine_perception.metrics.semantic import SemanticConfusion


def box(shape: tuple[int, int], top: int, left: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + height, left : left + width] = True
    return mask


# ------------------------------------------------------------------------------------------ Boundary IoU


def test_boundary_width_follows_the_image_diagonal() -> None:
    # 20x20: 0.02 * 28.28 = 0.57 -> 1; 100x100: 0.02 * 141.4 = 2.83 -> 3; tiny ratios still give 1
    assert boundary_width((20, 20), 0.02) == 1
    assert boundary_width((100, 100), 0.02) == 3
    assert boundary_width((1024, 2048), 0.005) == 11  # 0.005 * 2289.7 = 11.4
    assert boundary_width((100, 100), 0.0) == 1


def test_mask_boundary_band_widths_by_hand() -> None:
    # 10x10 square inside a 20x20 image, d = 1: the inner ring, 100 - 8*8 = 36 pixels
    square = box((20, 20), 5, 5, 10, 10)
    ring = mask_boundary(square)
    assert ring.sum() == 36 and not ring[6:14, 6:14].any() and ring[square].sum() == 36
    # the full image: the image border counts as boundary, outer ring 400 - 18*18 = 76 pixels
    assert mask_boundary(np.ones((20, 20), bool)).sum() == 76
    # 40x40 square in 100x100, d = 3: 1600 - 34*34 = 444 pixels
    assert mask_boundary(box((100, 100), 30, 30, 40, 40)).sum() == 444


def _blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Random smooth blobs, several touching the image border."""
    noise = cv2.GaussianBlur(rng.standard_normal(shape), (0, 0), 4)
    return noise > np.quantile(noise, rng.uniform(0.4, 0.9))


def test_mask_boundary_equals_the_official_full_image_erosion() -> None:
    # boundary-iou-api's mask_to_boundary, literally: pad the whole image, erode d times, subtract
    rng = np.random.default_rng(3)
    for shape, ratio in (((60, 90), 0.02), ((120, 80), 0.05), ((50, 50), 0.005)):
        mask = _blobs(rng, shape)
        d = max(1, int(round(ratio * np.sqrt(shape[0] ** 2 + shape[1] ** 2))))
        padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        official = mask.astype(np.uint8) - cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
        np.testing.assert_array_equal(mask_boundary(mask, ratio), official.astype(bool))


def test_rle_and_array_masks_are_the_same_pixels() -> None:
    mask = _blobs(np.random.default_rng(4), (37, 53))
    coco = to_rle(mask, "m")
    np.testing.assert_array_equal(to_mask(coco, "m"), mask)
    pixels, size = foreground_pixels(coco, "m")
    assert size == (37, 53)
    np.testing.assert_array_equal(np.sort(pixels), np.flatnonzero(mask))
    plain = {"size": [37, 53], "counts": rle.encode(mask).tolist()}
    np.testing.assert_array_equal(np.sort(foreground_pixels(plain, "m")[0]), np.flatnonzero(mask))


def test_boundary_iou_of_shifted_squares_by_hand() -> None:
    # 10x10 squares in 20x20 (d = 1), B one column right of A. Ring A: cols 5, 14 and rows 5, 14 over
    # cols 5..14; ring B the same one column right. Common: rows 5 and 14 over cols 6..14 = 18 pixels;
    # union 36 + 36 - 18 = 54 -> 1/3 (the mask IoU is 90/110).
    a, b = box((20, 20), 5, 5, 10, 10), box((20, 20), 5, 6, 10, 10)
    assert boundary_iou(a, b) == pytest.approx(1 / 3)
    # 40x40 squares in 100x100 (d = 3), shifted by 3 columns: bands of 444 px; common part = overlap of
    # the squares (40 x 37 = 1480) minus the union of the inner squares (34 x 37 = 1258) = 222;
    # union 444 + 444 - 222 = 666 -> 1/3
    c, d = box((100, 100), 30, 30, 40, 40), box((100, 100), 30, 33, 40, 40)
    assert boundary_iou(c, d) == pytest.approx(1 / 3)
    assert boundary_iou(a, a) == 1.0
    assert boundary_iou(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    assert boundary_iou(a, np.zeros((20, 20))) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        boundary_iou(a, np.zeros((20, 21)))
    with pytest.raises(ValueError, match="2-D"):
        boundary_iou(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


# ---------------------------------------------------------------------------------------- boundary F


def test_label_boundaries_of_a_square_by_hand() -> None:
    # seg2bmap marks a pixel whose right, lower or lower-right neighbour differs. For a 10x10 square at
    # rows/cols 5..14: inside, the right column and bottom row (19 px); outside, column 4 rows 4..14 and
    # row 4 cols 5..14 (21 px): 40 in all, the image border never counts.
    square = box((20, 20), 5, 5, 10, 10)
    b = label_boundaries(square)
    assert b.sum() == 40
    assert b[4, 4:15].all() and b[4:15, 4].all() and b[5:15, 14].all() and b[14, 5:15].all()
    assert label_boundaries(np.ones((6, 6), bool)).sum() == 0


def test_boundary_f_of_shifted_squares_by_hand() -> None:
    # The square shifted 2 columns right. Tolerance 2: every boundary pixel lies exactly 2 px from its
    # counterpart -> F = 1. Tolerance 1 (the 4-neighbourhood): predicted boundary pixels within 1 px of the
    # ground-truth boundary: column 6 at rows 4, 5, 13, 14 (4); row 4 cols 7..15 (9); column 16 none;
    # row 14 cols 7..15 (9) -> 22 of 40; by symmetry recall is 22/40 too, so F = 0.55.
    gt, pred = box((20, 20), 5, 5, 10, 10), box((20, 20), 5, 7, 10, 10)
    assert boundary_f_score(pred, gt, 2).f == 1.0
    one = boundary_f_score(pred, gt, 1)
    assert (one.precision, one.recall, one.f) == pytest.approx((0.55, 0.55, 0.55))
    # tolerance 0: only coinciding pixels, rows 4 and 14 over cols 6..14 -> 18/40
    assert boundary_f_score(pred, gt, 0).precision == pytest.approx(0.45)


def test_boundary_f_empty_cases_and_bad_input() -> None:
    empty, square = np.zeros((20, 20), bool), box((20, 20), 5, 5, 10, 10)
    assert boundary_f_score(empty, empty, 1).f == 1.0
    missed = boundary_f_score(empty, square, 1)
    assert (missed.precision, missed.recall, missed.f) == (1.0, 0.0, 0.0)
    hallucinated = boundary_f_score(square, empty, 1)
    assert (hallucinated.precision, hallucinated.recall) == (0.0, 1.0)
    with pytest.raises(ValueError, match="tolerance_px"):
        boundary_f_score(square, square, -1)
    with pytest.raises(ValueError, match="NaN"):
        boundary_f_score(np.full((3, 3), np.nan), square[:3, :3], 1)
    assert tolerance_from_ratio((1024, 2048)) == 3  # openseg's default: ceil(0.00088 * 2289.7)


def test_boundary_f_of_instance_maps_counts_contact_lines() -> None:
    # Two touching instances (cols 5..9 and 10..14) against a prediction that merges them. The ground
    # truth adds the contact column 9 over rows 5..13 (9 px) to the square's 40 -> 49 px; the merged
    # boundary (40 px) lies on it: P = 1. Tolerance 0: R = 40/49. Tolerance 1: of the contact pixels only
    # rows 5 and 13 touch the merged boundary (rows 4 and 14): R = 42/49 = 6/7, F = 2 * 6/7 / (13/7) = 12/13.
    gt = np.zeros((20, 20), np.int32)
    gt[5:15, 5:10], gt[5:15, 10:15] = 26001, 26002
    merged = np.where(gt > 0, 26001, 0)
    assert label_boundaries(gt).sum() == 49
    assert boundary_f_score(merged, gt, 0).recall == pytest.approx(40 / 49)
    tol1 = boundary_f_score(merged, gt, 1)
    assert (tol1.precision, tol1.recall, tol1.f) == pytest.approx((1.0, 6 / 7, 12 / 13))


def test_semantic_boundary_f_averages_images_and_ignores_void() -> None:
    gt = np.where(box((20, 20), 5, 5, 10, 10), 1, 0)
    score = SemanticBoundaryF(2, tolerance_px=1, class_names=["bg", "square"])
    # image 1: perfect except inside the ignored top band, where the prediction differs -> F = 1
    gt_void, pred = gt.copy(), gt.copy()
    gt_void[:3], pred[:3] = 255, 1
    score.update(pred, gt_void)
    # image 2: the square shifted by 2 (F = 0.55 for the square and for its complement, same boundary)
    score.update(np.where(box((20, 20), 5, 7, 10, 10), 1, 0), gt)
    assert score.per_class() == pytest.approx([0.775, 0.775])
    assert score.mean() == pytest.approx(0.775)
    assert "77.50" in score.table()


# ------------------------------------------------------------------------------------------- COCO AP


def test_coco_perfect_prediction_scores_one() -> None:
    gt = [[GtInstance(1, box((64, 64), 2, 2, 20, 20)), GtInstance(2, box((64, 64), 30, 30, 30, 30))]]
    big = to_rle(box((64, 64), 30, 30, 30, 30), "p")  # masks as arrays or as RLE
    pred = [[PredInstance(1, box((64, 64), 2, 2, 20, 20), 0.9), PredInstance(2, big, 0.8)]]
    result = coco_mask_ap(gt, pred, class_names={1: "car", 2: "person"})
    assert result.summary["AP"] == pytest.approx(1.0) and result.summary["AP75"] == pytest.approx(1.0)
    assert result.per_class["car"]["AP"] == pytest.approx(1.0)
    assert math.isnan(result.summary["APl"])  # no ground truth above 96^2 px: pycocotools' -1
    assert coco_boundary_ap(gt, pred).summary["AP"] == pytest.approx(1.0)
    assert result.to_dict()["summary"]["APl"] is None
    assert "car" in result.table()


def test_coco_fp_above_a_partial_tp_by_hand() -> None:
    # One 10x10 GT. A disjoint FP scored 0.9 ranks above a TP shifted by 2 columns (IoU 80/120 = 2/3),
    # matched at IoU thresholds 0.50-0.65 (4 of 10). There: recall [0, 1], precision [0, 1/2], made
    # monotone [1/2, 1/2], so all 101 recall points read 1/2; elsewhere 0. AP = 4 * 0.5 / 10 = 0.2.
    shape = (40, 40)
    gt = [[GtInstance(3, box(shape, 5, 5, 10, 10))]]
    pred = [[PredInstance(3, box(shape, 25, 25, 10, 10), 0.9), PredInstance(3, box(shape, 5, 7, 10, 10), 0.8)]]
    s = coco_mask_ap(gt, pred).summary
    assert (s["AP"], s["AP50"], s["AP75"], s["APs"]) == pytest.approx((0.2, 0.5, 0.0, 0.2))
    assert math.isnan(s["APm"])


def test_coco_interpolation_over_two_images_by_hand() -> None:
    # Three GTs over two images, detections by score: TP, FP, TP (the third GT is missed).
    # recall [1/3, 1/3, 2/3], precision [1, 1/2, 2/3] -> monotone [1, 2/3, 2/3]. Recall points 0.00-0.33
    # (34) read 1, 0.34-0.66 (33) read 2/3, 0.67-1 read 0: AP = (34 + 22) / 101 at every IoU threshold.
    shape = (50, 50)
    a, b, c = box(shape, 0, 0, 10, 10), box(shape, 20, 20, 10, 10), box(shape, 35, 0, 10, 10)
    gt = [[GtInstance(1, a), GtInstance(1, b)], [GtInstance(1, c)]]
    pred = [[PredInstance(1, a, 0.9), PredInstance(1, b, 0.5)], [PredInstance(1, box(shape, 0, 30, 10, 10), 0.7)]]
    assert coco_mask_ap(gt, pred).summary["AP"] == pytest.approx(56 / 101)


def test_coco_per_class_ap_and_mean() -> None:
    # class 1 found (AP 1), class 2 missed (AP 0), class 3 only predicted (NaN, left out): mean 0.5
    shape = (30, 30)
    gt = [[GtInstance(1, box(shape, 0, 0, 8, 8)), GtInstance(2, box(shape, 10, 10, 8, 8))]]
    pred = [[PredInstance(1, box(shape, 0, 0, 8, 8), 0.6), PredInstance(3, box(shape, 20, 20, 8, 8), 0.9)]]
    result = coco_mask_ap(gt, pred, class_names={1: "car", 2: "person", 3: "bike"})
    assert result.summary["AP"] == pytest.approx(0.5)
    assert (result.per_class["car"]["AP"], result.per_class["person"]["AP"]) == pytest.approx((1.0, 0.0))
    assert math.isnan(result.per_class["bike"]["AP"])


def test_coco_crowd_region_absorbs_predictions() -> None:
    shape = (40, 40)
    gt = [[GtInstance(1, box(shape, 0, 0, 10, 10)), GtInstance(1, box(shape, 20, 0, 20, 40), iscrowd=True)]]
    pred = [[PredInstance(1, box(shape, 25, 5, 10, 10), 0.95), PredInstance(1, box(shape, 0, 0, 10, 10), 0.5)]]
    assert coco_mask_ap(gt, pred).summary["AP"] == pytest.approx(1.0)


def test_boundary_ap_rejects_a_coarse_match_by_hand() -> None:
    # 40x40 squares in 100x100 shifted by 3 columns: mask IoU 1480/1720 = 0.86 (matched at 0.50-0.85,
    # 8 of 10 thresholds -> mask AP 0.8), Boundary IoU 1/3 (see above) -> min < 0.5: boundary AP 0.
    gt = [[GtInstance(1, box((100, 100), 30, 30, 40, 40))]]
    pred = [[PredInstance(1, box((100, 100), 30, 33, 40, 40), 0.9)]]
    assert coco_mask_ap(gt, pred).summary["AP"] == pytest.approx(0.8)
    assert coco_boundary_ap(gt, pred).summary["AP"] == 0.0
    # with a 1-px band (ratio 0: d = 1) the bands share 2*37 of 2*156-74 px; still far below 0.5
    assert coco_boundary_ap(gt, pred, dilation_ratio=0.0).summary["AP"] == 0.0


def test_coco_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="1 ground-truth images but 2"):
        coco_mask_ap([[]], [[], []])
    with pytest.raises(ValueError, match="image 0, prediction 0: score"):
        coco_mask_ap([[GtInstance(1, box((8, 8), 0, 0, 2, 2))]], [[PredInstance(1, box((8, 8), 0, 0, 2, 2), math.nan)]])
    with pytest.raises(ValueError, match="image 0: its masks differ in size"):
        coco_mask_ap([[GtInstance(1, box((8, 8), 0, 0, 2, 2))]], [[PredInstance(1, box((8, 9), 0, 0, 2, 2), 0.5)]])
    with pytest.raises(ValueError, match="only 0 and 1"):
        coco_mask_ap([[GtInstance(1, np.full((4, 4), 7))]], [[]])
    with pytest.raises(ValueError, match="counts"):
        coco_mask_ap([[GtInstance(1, {"size": [2, 2], "counts": [1, 1]})]], [[]])


# ------------------------------------------------------------------------------------- Cityscapes AP

CAR, PERSON, BICYCLE, CARAVAN, ROAD, STATIC = 26, 24, 33, 29, 7, 4


def test_cityscapes_ap_by_hand() -> None:
    ids = np.full((40, 60), ROAD, np.int32)
    ids[5:25, 5:25] = CAR * 1000  # a 400 px car
    exact = PredInstance(CAR, ids == CAR * 1000, 0.9)
    result = cityscapes_ap([ids], [[exact]])
    # one TP at every threshold: (R, P) points (1, 1) and the artificial (0, 1); widths 1/2, 1/2 -> AP 1
    assert result.per_class["car"]["AP"] == 1.0 and result.summary["AP"] == 1.0
    assert math.isnan(result.per_class["person"]["AP"])  # no ground truth
    # plus a disjoint FP scored higher. Distinct scores 0.9, 0.95: at 0.9 P = 1/2, R = 1; at 0.95 P = 0,
    # R = 0; artificial (R 0, P 1). Recall padded [1, 1, 0, 0, 0] -> widths [1/2, 1/2, 0]:
    # AP = 1/2 * 1/2 + 0 * 1/2 + 1 * 0 = 0.25 (COCO would say 0.5)
    fp = PredInstance(CAR, box(ids.shape, 28, 30, 10, 20), 0.95)
    assert cityscapes_ap([ids], [[exact, fp]]).summary["AP"] == pytest.approx(0.25)
    # the same FP lying on void (static) or on a car group is ignored; on road it is not
    for region_id, ap in ((STATIC, 1.0), (CAR, 1.0), (ROAD, 0.25)):
        scene = ids.copy()
        scene[28:38, 30:50] = region_id
        assert cityscapes_ap([scene], [[exact, fp]]).summary["AP"] == pytest.approx(ap)
    # An FP is ignored only when its share of ignored pixels exceeds the threshold. Half on void (100 of
    # 200 px): never above, counted everywhere -> 0.25. 140 of 200 px on void (0.7): above 0.50 to 0.65
    # (AP 1), but numpy's 0.7000000000000002 is not below it (AP 0.25 from "0.70" on): (4 + 6 * 0.25) / 10
    for void_cols, ap in ((10, 0.25), (14, 0.55)):
        scene = ids.copy()
        scene[28:38, 30 : 30 + void_cols] = STATIC
        assert cityscapes_ap([scene], [[exact, fp]]).summary["AP"] == pytest.approx(ap)
    # IoU exactly 0.5 (the top half of the car) does not match at 0.50: the overlap must exceed it
    top_half = PredInstance(CAR, box(ids.shape, 5, 5, 10, 20), 0.9)
    assert cityscapes_ap([ids], [[top_half]]).summary["AP50"] == 0.0
    # a car without predictions scores 0; a class with predictions but no ground truth stays NaN
    none = cityscapes_ap([ids], [[PredInstance(PERSON, ids == CAR * 1000, 0.5)]])
    assert none.per_class["car"]["AP"] == 0.0 and math.isnan(none.per_class["person"]["AP"])
    # the case the official tool crashes on (predictions only on ignored pixels): AP 0
    on_void = ids.copy()
    on_void[28:38, 30:50] = STATIC
    assert cityscapes_ap([on_void], [[PredInstance(CAR, box(ids.shape, 28, 30, 10, 20), 0.5)]]).summary["AP"] == 0.0


def _random_scene(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, list[PredInstance]]:
    """Instance ids with stuff, void, groups, small and occluded instances, and predictions that are
    exact or shifted copies, duplicates, wrong classes, random boxes (on void too), a class that is not
    evaluated and an empty mask."""
    h, w = shape
    ids = np.full(shape, ROAD, np.int32)
    ids[: h // 4] = rng.choice([STATIC, 0, 21])  # void or vegetation on top
    for k in range(int(rng.integers(4, 9))):
        cls = int(rng.choice([CAR, CAR, PERSON, BICYCLE, CARAVAN]))
        top, left = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        bh, bw = int(rng.integers(5, 28)), int(rng.integers(5, 36))
        ids[top : top + bh, left : left + bw] = cls if rng.random() < 0.15 else cls * 1000 + k
    scores = np.round(rng.uniform(0.05, 1.0, 64), 1)  # coarse scores: ties happen
    preds: list[PredInstance] = []
    for region in np.unique(ids[ids >= 24]):
        mask = ids == region
        for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
            shift = rng.choice([0, 0, 0, 1, -1, 2, -3], size=2)
            shifted = np.roll(mask, (int(shift[0]), int(shift[1])), axis=(0, 1))
            cls = int(region if region < 1000 else region // 1000)
            if rng.random() < 0.1:
                cls = int(rng.choice([CAR, PERSON, BICYCLE]))
            preds.append(PredInstance(cls, shifted, float(scores[len(preds)])))
    for _ in range(int(rng.integers(1, 4))):
        top, left = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
        mask = box(shape, top, left, int(rng.integers(6, 20)), int(rng.integers(6, 20)))
        preds.append(PredInstance(int(rng.choice([CAR, PERSON, BICYCLE])), mask, float(scores[len(preds)])))
    preds.append(PredInstance(ROAD, ids == ROAD, 0.5))  # not an instance class: dropped
    preds.append(PredInstance(CAR, np.zeros(shape, bool), 0.7))  # empty: dropped
    return ids, preds


def _official_ap(
    tmp: Path, scenes: list[tuple[np.ndarray, list[PredInstance]]], monkeypatch: pytest.MonkeyPatch
) -> tuple[np.ndarray, dict]:
    """cityscapesscripts' evaluator on the scenes written in its layout (its steps, minus file caches)."""
    import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as official

    # numpy 2.4 removed in1d, which the official tool calls; isin(...).ravel() is its documented equivalent
    monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(a, b).ravel(), raising=False)
    gt_files, pred_files = [], []
    results = tmp / "results"
    for frame, (ids, preds) in enumerate(scenes):
        gt_path = tmp / "gtFine" / "val" / "city" / f"city_000000_{frame:06d}_gtFine_instanceIds.png"
        gt_path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(gt_path), ids.astype(np.uint16))
        txt = results / f"city_000000_{frame:06d}_pred.txt"
        write_cityscapes_predictions(txt, preds)
        gt_files.append(str(gt_path))
        pred_files.append(str(txt))
    args = copy.copy(official.args)
    args.quiet, args.JSONOutput = True, False
    args.predictionPath, args.predictionWalk = str(results.resolve()), None
    official.setInstanceLabels(args)
    matches = official.matchGtWithPreds(pred_files, gt_files, official.instances2dict(gt_files), args)
    ap = official.evaluateMatches(matches, args)
    return ap[0], official.computeAverages(ap, args)


@pytest.mark.parametrize("seed", range(12))
def test_cityscapes_ap_equals_cityscapesscripts(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    scenes = [_random_scene(rng, (60, 80)) for _ in range(4)]
    official_matrix, official_avg = _official_ap(tmp_path, scenes, monkeypatch)
    names = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert [label.name for label in EVAL_LABELS] == names
    # in memory, and through our reader of the files the official tool just read
    ours = cityscapes_ap_matrix([ids for ids, _ in scenes], [preds for _, preds in scenes])
    np.testing.assert_array_equal(ours, official_matrix)
    read_back = [read_cityscapes_predictions(tmp_path / "results" / f"city_000000_{f:06d}_pred.txt") for f in range(4)]
    np.testing.assert_array_equal(cityscapes_ap_matrix([ids for ids, _ in scenes], read_back), official_matrix)
    result = cityscapes_ap([ids for ids, _ in scenes], [preds for _, preds in scenes])
    assert result.summary["AP"] == official_avg["allAp"]
    assert result.summary["AP50"] == official_avg["allAp50%"]
    for name, values in result.per_class.items():
        expected = official_avg["classes"][name]
        np.testing.assert_array_equal([values["AP"], values["AP50"]], [expected["ap"], expected["ap50%"]])
    assert 0.0 < result.summary["AP"] < 1.0  # the cases are neither trivial nor empty


def test_cityscapes_prediction_files_errors(tmp_path: Path) -> None:
    txt = tmp_path / "city_000000_000000_pred.txt"
    txt.write_text("a.png 26\n")
    with pytest.raises(AnnotationError, match=r"pred.txt:1: expected"):
        read_cityscapes_predictions(txt)
    txt.write_text("\nmissing.png 26 0.5\n")
    with pytest.raises(AnnotationError, match=r"pred.txt:2: cannot read mask"):
        read_cityscapes_predictions(txt)
    txt.write_text("/abs.png 26 0.5\n")
    with pytest.raises(AnnotationError, match="relative"):
        read_cityscapes_predictions(txt)
    txt.write_text("a.png 26 nan\n")
    with pytest.raises(AnnotationError, match="not finite"):
        read_cityscapes_predictions(txt)
    with pytest.raises(ValueError, match="not a Cityscapes label id"):
        cityscapes_ap([np.full((4, 4), ROAD)], [[PredInstance(99, np.ones((4, 4), bool), 0.5)]])
    with pytest.raises(ValueError, match="unknown classes"):
        cityscapes_ap([np.full((4, 4), 99)], [[]])
    with pytest.raises(ValueError, match="16-bit"):
        cityscapes_ap([np.full((4, 4), 99_000)], [[]])
    with pytest.raises(ValueError, match="mask shape"):
        cityscapes_ap([np.full((4, 4), ROAD)], [[PredInstance(CAR, np.ones((4, 5), bool), 0.5)]])
    with pytest.raises(ValueError, match="RLE counts"):
        cityscapes_ap([np.full((4, 4), ROAD)], [[PredInstance(CAR, {"size": [4, 4], "counts": [3, 2]}, 0.5)]])


# ----------------------------------------------------------------------------------------- semantic


def test_semantic_iou_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 2, 2], [255, 2, 1, 1]])
    # 12 valid pixels. Class 0: TP 3, FN 1 (-> 1), FP 1 (a 2 predicted 0) -> 3/5.
    # Class 1: TP 4, FP 1 (a 0 predicted 1); its predictions on ignored pixels do not count -> 4/5.
    # Class 2: TP 2, FN 2 (one -> 0, one -> 255, a void prediction still misses) -> 2/4.
    conf = SemanticConfusion(4)
    conf.update(pred, gt)
    np.testing.assert_allclose(conf.iou(), [0.6, 0.8, 0.5, np.nan])
    assert conf.miou() == pytest.approx(1.9 / 3)  # class 3 never appears: NaN, left out
    conf.update(pred, gt)  # accumulating the same image leaves the ratios unchanged
    assert conf.matrix.sum() == 24 and conf.miou() == pytest.approx(1.9 / 3)
    assert conf.to_dict()["IoU"]["3"] is None and "63.33" in conf.table()
    with pytest.raises(ValueError, match="neither classes nor ignore"):
        conf.update(pred, np.full((4, 4), 7))
    with pytest.raises(ValueError, match="integer labels"):
        conf.update(pred.astype(float), gt)


def test_semantic_cityscapes_lookup() -> None:
    # label ids: road 7 (train 0), car 26 (train 13), static 4 (void), lane marking 34 (train 19)
    gt = np.array([[7, 7, 26, 4], [34, 34, 26, 4]], np.uint8)
    pred = np.array([[7, 0, 26, 26], [34, 7, 26, 7]], np.uint8)
    with_lanes = SemanticConfusion.cityscapes()
    with_lanes.update(pred, gt)
    iou = dict(zip(with_lanes.class_names, with_lanes.iou()))
    # road: TP 1, FN 1 (predicted void id 0), FP 1 (a lane marking predicted road) -> 1/3; car 2/2;
    # lane marking: TP 1, FN 1 -> 1/2; predictions on the void column are not counted
    assert (iou["road"], iou["car"], iou["lane marking"]) == pytest.approx((1 / 3, 1.0, 0.5))
    folded = SemanticConfusion.cityscapes(lane_marking=False)
    folded.update(pred, gt)
    assert folded.num_classes == 19 and dict(zip(folded.class_names, folded.iou()))["road"] == pytest.approx(3 / 4)


def test_semantic_equals_cityscapesscripts(tmp_path: Path) -> None:
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as official

    rng = np.random.default_rng(7)
    args = copy.copy(official.args)
    args.evalInstLevelScore, args.quiet = False, True
    matrix = official.generateMatrix(args)
    ours = SemanticConfusion.cityscapes(lane_marking=False)
    for k in range(3):
        gt = rng.choice([0, 4, 7, 8, 11, 21, 23, 24, 26, 33], size=(30, 40)).astype(np.uint8)
        pred = np.where(rng.random((30, 40)) < 0.7, gt, rng.integers(0, 34, (30, 40))).astype(np.uint8)
        paths = [tmp_path / f"{name}{k}.png" for name in ("pred", "gt")]
        for path, image in zip(paths, (pred, gt)):
            assert cv2.imwrite(str(path), image)
        official.evaluatePair(str(paths[0]), str(paths[1]), matrix, {}, {}, args)
        ours.update(pred, gt)
    expected = {}
    for label_id in args.evalLabels:
        name = official.id2label[label_id].name
        if name in ours.class_names:
            expected[name] = official.getIouScoreForLabel(label_id, matrix, args)
    got = dict(zip(ours.class_names, ours.iou()))
    np.testing.assert_allclose([got[n] for n in expected], list(expected.values()), rtol=0, atol=1e-15)
    scores = {official.id2label[i].name: official.getIouScoreForLabel(i, matrix, args) for i in args.evalLabels}
    assert ours.miou() == pytest.approx(official.getScoreAverage(scores, args), abs=1e-15)
