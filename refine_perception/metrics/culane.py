"""CULane lane F1 as the official evaluator (SCNN `tools/lane_evaluation`, run with `-w 30 -t <thr>
-c 1640 -r 590`) computes it, or as the Python re-implementation most papers' code ships
(LaneATT -> lanedet -> CLRNet `culane_metric.py`).

Per image, every lane is up-sampled, drawn as a 30-px-wide polyline on a 590x1640 canvas, and the IoU of
every (ground truth, prediction) pair of masks is taken; a one-to-one matching maximises the summed IoU
and a matched pair is a true positive when its IoU is strictly above the threshold. TP/FP/FN are summed
over the images of a list (per category for CULane's nine test lists) and F1 = 2PR/(P+R).

The two modes differ where the tools differ; `official` is the default.

- Up-sampling. official: natural cubic spline, parametric in chord length, 50 samples per segment plus
  the last point; 2-point lanes drawn as one segment. python: `splprep(s=0, k=min(3, n-1))` (FITPACK's
  interpolating B-spline) at (n-1)*5+1 evenly spaced parameters, 2-point lanes included.
- To integer pixels. official: float -> float32 (cv::Point2f) -> rounded half to even (cvRound).
  python: float64 -> int32, i.e. truncated towards zero.
- Lanes with fewer than 2 points. official: kept; they match nothing and count as FP or FN.
  python: dropped by its file loader before anything is counted.
- Matching. official: the tool's own Kuhn-Munkres, which treats an edge as tight when its slack is
  below 1e-2, so on near-ties it can settle for a matching with a smaller IoU sum. python:
  `linear_sum_assignment(1 - IoU)`, exact.

Where both tools break we pick one behaviour, documented here: consecutive duplicate points are merged
before up-sampling (the C++ spline divides by zero on them, `splprep` raises), a lane whose points all
coincide is drawn as a dot; an IoU whose union is empty (two lanes entirely off the canvas) is 0 (C++:
NaN). The C++ spline evaluates t**3 with libm `pow`, we multiply: the two differ by at most one unit in
the last place of a float64, far below what survives the float32 cast and the rounding to pixels.
P, R and F1 are 0 where TP = 0 (the C++ binary prints -1 or NaN there).

Speed (same results as the literal algorithm, proven in test/test_lane_metrics.py): splines are evaluated
for all lanes of a chunk at once; each lane is drawn once (not once per pair) with one `cv2.polylines`
call on a canvas cropped to its bounding box, consecutive repeated pixels dropped (OpenCV draws a thick
polyline as the union of its segments, each with round caps, so repeats add nothing); pairs whose boxes
do not meet have IoU 0 without drawing; images are split over worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Literal, TypeVar

import cv2
import numpy as np
from scipy.interpolate import splev, splprep
from scipy.optimize import linear_sum_assignment

from refine_perception.data.formats.culane import CATEGORIES, CULANE_SIZE
from refine_perception.data.formats.lanes import as_lane
from refine_perception.metrics.table import format_table

Mode = Literal["official", "python"]

LANE_WIDTH = 30
ROW_STEP = 8  # predictions are written at every 8th row from the crop line down, as the official writers do
OFFICIAL_SAMPLES = 50  # spline samples per segment in the C++ tool
PYTHON_SAMPLES = 5  # in the Python re-implementation
# 0.50:0.05:0.95 as the decimals one passes to the C++ tool's -t (CLRNet's np.linspace gives
# 0.6000000000000001 and the like: a difference only for an IoU within 1e-16 of a threshold)
MF1_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
KM_TOLERANCE = 1e-2  # the C++ Kuhn-Munkres treats an edge as tight when its slack is below this
_CHUNK = 64  # images per unit of work: bounds the memory of the batched splines

Lanes = Sequence[np.ndarray]
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- splines


def _merge_repeats(points: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicates, keeping two points when all coincide (drawn as a dot)."""
    keep = np.r_[True, np.any(points[1:] != points[:-1], axis=1)]
    merged = points[keep]
    return merged if len(merged) >= 2 else points[:2]


def natural_spline(points: np.ndarray, samples: int = OFFICIAL_SAMPLES) -> np.ndarray:
    """The C++ `Spline::splineInterpTimes` for a batch of lanes with the same point count.

    `points` is (L, n, 2) float32, n >= 3. Each lane is a parametric natural cubic spline in chord length,
    solved with the Thomas algorithm in float64 (point differences in float32, as the C++ subtracts two
    cv::Point2f), sampled `samples` times per segment plus the last point; returns (L, (n-1)*samples+1, 2)
    float32 like the cv::Point2f it stores.
    """
    count, n = points.shape[:2]
    step = np.diff(points, axis=1).astype(np.float64)
    h = np.sqrt(step[..., 0] * step[..., 0] + step[..., 1] * step[..., 1])
    slope = step / h[..., None]
    rhs = 6.0 * (slope[:, 1:] - slope[:, :-1])
    sub, diag, sup = h[:, :-1], 2.0 * (h[:, :-1] + h[:, 1:]), h[:, 1:].copy()
    sup[:, 0] = sup[:, 0] / diag[:, 0]
    rhs[:, 0] = rhs[:, 0] / diag[:, 0, None]
    for i in range(1, n - 2):
        pivot = diag[:, i] - sub[:, i] * sup[:, i - 1]
        sup[:, i] = sup[:, i] / pivot
        rhs[:, i] = (rhs[:, i] - sub[:, i, None] * rhs[:, i - 1]) / pivot[:, None]
    moment = np.zeros((count, n, 2))
    moment[:, n - 2] = rhs[:, n - 3]
    for i in range(n - 4, -1, -1):
        moment[:, i + 1] = rhs[:, i] - sup[:, i, None] * moment[:, i + 2]
    hh = h[..., None]
    a = points[:, :-1].astype(np.float64)[:, :, None]
    b = (slope - (2.0 * hh * moment[:, :-1] + hh * moment[:, 1:]) / 6.0)[:, :, None]
    c = (moment[:, :-1] / 2.0)[:, :, None]
    d = ((moment[:, 1:] - moment[:, :-1]) / (6.0 * hh))[:, :, None]
    t = ((h / samples)[..., None] * np.arange(samples))[..., None]  # (L, n-1, samples, 1)
    # ((a + b t) + c t^2) + d t^3, the C++ association, accumulated in place
    curve = b * t
    curve += a
    curve += c * (t * t)
    curve += d * (t * t * t)
    curve = curve.reshape(count, (n - 1) * samples, 2).astype(np.float32)
    return np.concatenate([curve, points[:, -1:]], axis=1)


def python_spline(points: np.ndarray, samples: int = PYTHON_SAMPLES) -> np.ndarray:
    """The Python re-implementation's `interp`: FITPACK interpolating spline through the points,
    evaluated at (n-1)*samples+1 evenly spaced parameters; (M, 2) float64."""
    if np.all(points == points[0]):
        return points[:1].astype(np.float64)
    tck, u = splprep([points[:, 0], points[:, 1]], s=0, k=min(3, len(points) - 1))
    return np.array(splev(np.linspace(0.0, 1.0, (len(u) - 1) * samples + 1), tck)).T


def _saturate_int32(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -(2.0**31), 2.0**31 - 1).astype(np.int32)


def _drop_repeats(pixels: np.ndarray) -> list[np.ndarray]:
    """Split a batch (L, M, 2) of pixel polylines into lanes without consecutive repeated vertices."""
    keep = np.ones(pixels.shape[:2], bool)
    keep[:, 1:] = np.any(pixels[:, 1:] != pixels[:, :-1], axis=2)
    return [lane[kept] for lane, kept in zip(pixels, keep)]


def lane_pixels(lanes: Lanes, mode: Mode = "official") -> list[np.ndarray | None]:
    """The integer polyline vertices each lane is drawn with (consecutive repeats dropped); None for a
    lane of fewer than 2 points, which the official tool never draws (its IoU is 0)."""
    out: list[np.ndarray | None] = [None] * len(lanes)
    if mode == "python":
        for i, lane in enumerate(lanes):
            if len(lane) >= 2:
                curve = python_spline(_merge_repeats(lane))
                out[i] = _drop_repeats(_saturate_int32(np.trunc(curve))[None])[0]
        return out
    groups: dict[int, list[int]] = {}
    merged: dict[int, np.ndarray] = {}
    for i, lane in enumerate(lanes):
        if len(lane) < 2:
            continue
        points = _merge_repeats(np.asarray(lane, dtype=np.float32))
        merged[i] = points
        groups.setdefault(len(points), []).append(i)
    for n, members in groups.items():
        batch = np.stack([merged[i] for i in members])
        curves = batch if n == 2 else natural_spline(batch)
        for i, pixels in zip(members, _drop_repeats(_saturate_int32(np.rint(curves)))):
            out[i] = pixels
    return out


# ------------------------------------------------------------------------------------------ rasterising


@dataclass(frozen=True)
class _Raster:
    """A lane's mask cropped to its bounding box: rows y0..y0+h-1, columns x0..x0+w-1 of the canvas."""

    x0: int
    y0: int
    mask: np.ndarray
    area: int


def _box(pixels: np.ndarray, width: int, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Canvas box (x0, y0, x1, y1), inclusive, that holds everything the lane can paint."""
    margin = (width + 1) // 2 + 2
    (left, top), (right, bottom) = pixels.min(axis=0).tolist(), pixels.max(axis=0).tolist()
    x0, y0 = max(left - margin, 0), max(top - margin, 0)
    x1, y1 = min(right + margin, size[0] - 1), min(bottom + margin, size[1] - 1)
    return (x0, y0, x1, y1) if x0 <= x1 and y0 <= y1 else None


def _rasterise(pixels: np.ndarray, box: tuple[int, int, int, int], width: int) -> _Raster:
    x0, y0, x1, y1 = box
    canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    local = _saturate_int32(pixels - np.array([x0, y0], np.int64)).reshape(-1, 1, 2)
    if len(local) == 1:  # a polyline of one vertex draws nothing; the C++ draws a dot (zero-length line)
        point = (int(local[0, 0, 0]), int(local[0, 0, 1]))
        cv2.line(canvas, point, point, 1, width)
    else:
        cv2.polylines(canvas, [local], False, 1, width)
    mask = canvas.view(bool)
    return _Raster(x0, y0, mask, int(np.count_nonzero(mask)))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 <= x1 and y0 <= y1 else None


def _crop(raster: _Raster, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return raster.mask[y0 - raster.y0 : y1 - raster.y0 + 1, x0 - raster.x0 : x1 - raster.x0 + 1]


def pixel_ious(
    gt_pixels: Sequence[np.ndarray | None],
    pred_pixels: Sequence[np.ndarray | None],
    width: int = LANE_WIDTH,
    image_size: tuple[int, int] = CULANE_SIZE,
) -> np.ndarray:
    """IoU matrix (ground truth x prediction) of lanes given by `lane_pixels`."""
    gt_boxes = [None if p is None else _box(p, width, image_size) for p in gt_pixels]
    pred_boxes = [None if p is None else _box(p, width, image_size) for p in pred_pixels]
    ious = np.zeros((len(gt_pixels), len(pred_pixels)))
    rasters: dict[tuple[str, int], _Raster] = {}

    def raster(side: str, index: int) -> _Raster:
        key = (side, index)
        if key not in rasters:
            pixels, boxes = (gt_pixels, gt_boxes) if side == "gt" else (pred_pixels, pred_boxes)
            rasters[key] = _rasterise(pixels[index], boxes[index], width)  # type: ignore[arg-type]
        return rasters[key]

    for i, gt_box in enumerate(gt_boxes):
        for j, pred_box in enumerate(pred_boxes):
            common = None if gt_box is None or pred_box is None else _overlap(gt_box, pred_box)
            if common is None:
                continue
            a, b = raster("gt", i), raster("pred", j)
            inter = int(np.count_nonzero(_crop(a, common) & _crop(b, common)))
            union = a.area + b.area - inter
            ious[i, j] = inter / union if union else 0.0
    return ious


def lane_ious(
    gts: Lanes,
    preds: Lanes,
    mode: Mode = "official",
    width: int = LANE_WIDTH,
    image_size: tuple[int, int] = CULANE_SIZE,
) -> np.ndarray:
    """IoU matrix (ground truth x prediction) of the drawn lanes of one image. In `python` mode lanes with
    fewer than 2 points are not in the matrix (that tool drops them when reading)."""
    gts, preds = _prepare(gts, "ground truth", mode), _prepare(preds, "prediction", mode)
    return pixel_ious(lane_pixels(gts, mode), lane_pixels(preds, mode), width, image_size)


# -------------------------------------------------------------------------------------------- matching


def official_matching(similarity: np.ndarray) -> np.ndarray:
    """For each ground-truth row, the matched prediction column (-1 if none), as the C++
    `Counter::makeMatch` finds it: Kuhn-Munkres with the side with fewer lanes as rows, an edge counts as
    tight when its slack is below 1e-2, and the search gives up (leaving rows unmatched) if no slack can
    be reduced."""
    if similarity.size == 0:
        return np.full(similarity.shape[0], -1, dtype=np.int64)
    transposed = similarity.shape[0] > similarity.shape[1]
    weights = (similarity.T if transposed else similarity).tolist()
    rows, cols = len(weights), len(weights[0])
    row_label = [max(-1e5, max(row)) for row in weights]
    col_label = [0.0] * cols
    owner = [-1] * cols  # row matched to each column
    partner = [-1] * rows  # column matched to each row
    row_seen = [False] * rows
    col_seen = [False] * cols

    def augment(u: int) -> bool:
        row_seen[u] = True
        for v in range(cols):
            if not col_seen[v] and abs(row_label[u] + col_label[v] - weights[u][v]) < KM_TOLERANCE:
                col_seen[v] = True
                if owner[v] == -1 or augment(owner[v]):
                    owner[v], partner[u] = u, v
                    return True
        return False

    for u in range(rows):
        while True:
            row_seen[:] = [False] * rows
            col_seen[:] = [False] * cols
            if augment(u):
                break
            slack = min(
                (
                    row_label[i] + col_label[j] - weights[i][j]
                    for i in range(rows)
                    if row_seen[i]
                    for j in range(cols)
                    if not col_seen[j]
                ),
                default=1e10,
            )
            if slack == 1e10:
                return _gt_to_pred(partner, owner, transposed)
            for i in range(rows):
                if row_seen[i]:
                    row_label[i] -= slack
            for j in range(cols):
                if col_seen[j]:
                    col_label[j] += slack
    return _gt_to_pred(partner, owner, transposed)


def _gt_to_pred(partner: list[int], owner: list[int], transposed: bool) -> np.ndarray:
    return np.array(owner if transposed else partner, dtype=np.int64)


def is_true_positive(iou: np.ndarray | float, threshold: np.ndarray | float) -> np.ndarray:
    """CULane's rule for a matched pair: its IoU is strictly above the threshold (so at IoU 0.5 exactly a
    pair is not a true positive of F1@50). Every count of matched lanes goes through this comparison."""
    return np.greater(iou, threshold)


def matched_ious(similarity: np.ndarray, mode: Mode = "official") -> np.ndarray:
    """IoUs of the matched (ground truth, prediction) pairs of one image."""
    if similarity.size == 0 or not similarity.any():
        return np.zeros(0)
    if mode == "official":
        match = official_matching(similarity)
        rows = np.flatnonzero(match >= 0)
        return similarity[rows, match[rows]]
    pred_rows, gt_cols = linear_sum_assignment(1.0 - similarity.T)
    return similarity.T[pred_rows, gt_cols]


# ------------------------------------------------------------------------------------------- counting


def _prepare(lanes: Lanes, what: str, mode: Mode) -> list[np.ndarray]:
    checked = [as_lane(lane, f"{what} lane {k}") for k, lane in enumerate(lanes)]
    return [lane for lane in checked if len(lane) >= 2] if mode == "python" else checked


def _per_image(items: list[T], sizes: list[int]) -> list[list[T]]:
    bounds = np.cumsum([0, *sizes])
    return [items[bounds[k] : bounds[k + 1]] for k in range(len(sizes))]


def _count_chunk(
    job: tuple[list[list[np.ndarray]], list[list[np.ndarray]], np.ndarray, Mode, int, tuple[int, int]],
) -> np.ndarray:
    """(images, thresholds, 3) TP/FP/FN for a chunk of images whose lanes are already validated; the
    splines of all lanes in the chunk are computed together."""
    gts, preds, thresholds, mode, width, image_size = job
    gt_sizes, pred_sizes = [len(image) for image in gts], [len(image) for image in preds]
    gt_pixels = _per_image(lane_pixels([lane for image in gts for lane in image], mode), gt_sizes)
    pred_pixels = _per_image(lane_pixels([lane for image in preds for lane in image], mode), pred_sizes)
    counts = np.zeros((len(gts), len(thresholds), 3), np.int64)
    for k in range(len(gts)):
        ious = matched_ious(pixel_ious(gt_pixels[k], pred_pixels[k], width, image_size), mode)
        tp = is_true_positive(ious[:, None], thresholds[None, :]).sum(axis=0)
        counts[k, :, 0] = tp
        counts[k, :, 1] = pred_sizes[k] - tp
        counts[k, :, 2] = gt_sizes[k] - tp
    return counts


@dataclass(frozen=True)
class LaneCounts:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if self.tp else 0.0


@dataclass(frozen=True)
class CULaneResult:
    """Counts per category ("all" first) and IoU threshold; `str()` is a table."""

    mode: str
    thresholds: tuple[float, ...]
    counts: dict[str, tuple[LaneCounts, ...]]
    images: dict[str, int]

    def at(self, threshold: float = 0.5, category: str = "all") -> LaneCounts:
        index = min(range(len(self.thresholds)), key=lambda k: abs(self.thresholds[k] - threshold))
        if abs(self.thresholds[index] - threshold) > 1e-9:
            raise KeyError(f"threshold {threshold} was not evaluated (have {self.thresholds})")
        return self.counts[category][index]

    def f1(self, threshold: float = 0.5, category: str = "all") -> float:
        return self.at(threshold, category).f1

    def mf1(self, category: str = "all") -> float:
        """Mean F1 over the evaluated thresholds: CULane's mF1 with the default 0.50:0.05:0.95."""
        return float(np.mean([c.f1 for c in self.counts[category]]))

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "thresholds": list(self.thresholds),
            "categories": {
                name: {
                    "images": self.images[name],
                    "mF1": self.mf1(name),
                    "per_threshold": [
                        {
                            "iou": thr,
                            "TP": c.tp,
                            "FP": c.fp,
                            "FN": c.fn,
                            "precision": c.precision,
                            "recall": c.recall,
                            "F1": c.f1,
                        }
                        for thr, c in zip(self.thresholds, counts)
                    ],
                }
                for name, counts in self.counts.items()
            },
        }

    def table(self) -> str:
        """One row per category: counts and P/R at the first threshold, F1 at each threshold, mF1."""
        thr_names = [f"F1@{round(t * 100)}" for t in self.thresholds]
        header = ["category", "images", "TP", "FP", "FN", "P", "R", *thr_names, "mF1"]
        rows = [header]
        for name, counts in self.counts.items():
            first = counts[0]
            rows.append(
                [
                    name,
                    str(self.images[name]),
                    str(first.tp),
                    str(first.fp),
                    str(first.fn),
                    f"{100 * first.precision:.2f}",
                    f"{100 * first.recall:.2f}",
                    *(f"{100 * c.f1:.2f}" for c in counts),
                    f"{100 * self.mf1(name):.2f}",
                ]
            )
        return f"CULane ({self.mode}; TP/FP/FN/P/R at IoU {self.thresholds[0]:g})\n" + format_table(rows)

    def __str__(self) -> str:
        return self.table()


def culane_f1(
    preds: Sequence[Lanes],
    gts: Sequence[Lanes],
    iou_thresholds: Sequence[float] = MF1_THRESHOLDS,
    mode: Mode = "official",
    categories: Sequence[str | None] | None = None,
    width: int = LANE_WIDTH,
    image_size: tuple[int, int] = CULANE_SIZE,
    workers: int | None = 1,
) -> CULaneResult:
    """Score per-image predictions against ground truth (both lists of (N, 2) lanes in pixels).

    `mode` is "official" (the C++ evaluator, default) or "python" (the re-implementation papers ship);
    see the module docstring for how they differ. `categories` gives each image's category (CULane's test
    lists: normal, crowd, ..., night); each category and "all" get their own counts. `workers` > 1 (or
    None: one per CPU) spreads chunks of images over spawned processes: about 3 ms per CULane-like image
    on 2 cores instead of 5 ms on one (benchmarks/bench_lane_metrics.py).
    """
    if mode not in ("official", "python"):
        raise ValueError(f"mode must be 'official' or 'python', got {mode!r}")
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} prediction images for {len(gts)} ground-truth images")
    if categories is not None and len(categories) != len(gts):
        raise ValueError(f"{len(categories)} categories for {len(gts)} images")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or not len(thresholds) or not ((thresholds >= 0) & (thresholds < 1)).all():
        raise ValueError(f"iou_thresholds must be a non-empty list of values in [0, 1), got {iou_thresholds}")
    gt_lanes = [_prepare(image, f"image {k}: ground-truth", mode) for k, image in enumerate(gts)]
    pred_lanes = [_prepare(image, f"image {k}: prediction", mode) for k, image in enumerate(preds)]
    jobs = [
        (gt_lanes[s : s + _CHUNK], pred_lanes[s : s + _CHUNK], thresholds, mode, width, image_size)
        for s in range(0, len(gts), _CHUNK)
    ]
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers > 1 and len(jobs) > 1:
        # spawn, not fork: callers (training loops, nodes) may hold threads that fork would copy mid-lock
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(_count_chunk, jobs))
    else:
        parts = [_count_chunk(job) for job in jobs]
    per_image = np.concatenate(parts) if parts else np.zeros((0, len(thresholds), 3), np.int64)
    return _summarise(per_image, categories, tuple(float(t) for t in thresholds), mode)


def _summarise(
    per_image: np.ndarray, categories: Sequence[str | None] | None, thresholds: tuple[float, ...], mode: str
) -> CULaneResult:
    names = ["all"]
    if categories is not None:
        present = {c for c in categories if c is not None}
        names += [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    labels = np.array(["" if c is None else c for c in categories], dtype=object) if categories else None
    counts, images = {}, {}
    for name in names:
        rows = per_image if name == "all" or labels is None else per_image[labels == name]
        total = rows.sum(axis=0)
        counts[name] = tuple(LaneCounts(int(tp), int(fp), int(fn)) for tp, fp, fn in total.reshape(-1, 3))
        images[name] = len(rows)
    return CULaneResult(mode, thresholds, counts, images)
