"""Time the lane metrics on synthetic CULane-like and TuSimple-like data (default 10 000 images).

    ./dev run python -m benchmarks.bench_lane_metrics [--images N] [--workers W] [--json]

Ground truth mimics CULane annotations (2-4 lanes converging to a vanishing point, a point every 10 rows
from the bottom up to y = 260..350, some curvature, off-image points kept); predictions mimic CLRNet's
output files (rows 270..582 every 8 px, a few px of error, some lanes missed, some false lanes). Data
generation is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from refine_perception.core.cpu import describe
from refine_perception.data.formats.tusimple import H_SAMPLES, TuSimpleRecord
from refine_perception.metrics.culane import culane_f1
from refine_perception.metrics.tusimple import tusimple_eval


def _lane_x(
    ys: np.ndarray, bottom_x: float, vanish: tuple[float, float], bend: float, bottom: float
) -> np.ndarray:
    """x of a lane through (bottom_x, bottom) and the vanishing point, bent by `bend` px in the middle."""
    t = (ys - vanish[1]) / (bottom - vanish[1])
    return vanish[0] + (bottom_x - vanish[0]) * t + bend * t * (1 - t)


def culane_like(images: int, seed: int = 0) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    pred_rows = np.arange(582, 269, -8, dtype=np.float64)
    for _ in range(images):
        vanish = (rng.normal(820, 60), rng.normal(250, 10))
        count = int(rng.integers(2, 5))
        bottoms = np.sort(rng.uniform(-300, 1940, count))
        bend = rng.normal(0, 80)
        gt, pred = [], []
        for bottom_x in bottoms:
            top = rng.uniform(260, 350)
            ys = np.arange(590, top, -10, dtype=np.float64)
            gt.append(np.stack([_lane_x(ys, bottom_x, vanish, bend, 590), ys], axis=1))
            if rng.random() < 0.9:
                shift = rng.normal(0, 6)
                rows = pred_rows[pred_rows > top + rng.normal(0, 15)]
                xs = _lane_x(rows, bottom_x, vanish, bend, 590) + shift + rng.normal(0, 1.5, len(rows))
                keep = (xs >= 0) & (xs < 1640)
                if keep.sum() >= 2:
                    pred.append(np.stack([xs[keep], rows[keep]], axis=1))
        if rng.random() < 0.15:
            xs = _lane_x(pred_rows, rng.uniform(0, 1640), vanish, 0.0, 590)
            keep = (xs >= 0) & (xs < 1640)
            if keep.sum() >= 2:
                pred.append(np.stack([xs[keep], pred_rows[keep]], axis=1))
        gts.append(gt)
        preds.append(pred)
    return preds, gts


def tusimple_like(images: int, seed: int = 0) -> tuple[list[TuSimpleRecord], list[TuSimpleRecord]]:
    rng = np.random.default_rng(seed)
    rows = np.asarray(H_SAMPLES, dtype=np.float64)
    preds, gts = [], []
    for k in range(images):
        vanish = (rng.normal(640, 40), rng.normal(250, 10))
        count = int(rng.integers(3, 6))
        bottoms = np.linspace(-200, 1480, count) + rng.normal(0, 40, count)
        gt_xs = np.array([_lane_x(rows, b, vanish, rng.normal(0, 30), 720) for b in bottoms])
        gt_xs[(gt_xs < 0) | (gt_xs >= 1280) | (rows < vanish[1] + 20)] = -2
        pred_xs = gt_xs + rng.normal(0, 8, (len(gt_xs), 1))
        pred_xs[gt_xs < 0] = -2
        name = f"clips/bench/{k}.jpg"
        gts.append(TuSimpleRecord(name, rows, np.round(gt_xs)))
        preds.append(TuSimpleRecord(name, rows, pred_xs[rng.random(len(pred_xs)) < 0.9], run_time=8.0))
    return preds, gts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None, help="CULane processes (default: one per CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args()

    preds, gts = culane_like(args.images)
    figures: dict[str, object] = {"cpu": describe(), "images": args.images, "cpus": os.cpu_count()}
    results = {}
    for mode in ("official", "python"):
        start = time.perf_counter()
        results[mode] = culane_f1(preds, gts, mode=mode, workers=args.workers)  # type: ignore[arg-type]
        figures[f"culane_{mode}_s"] = round(time.perf_counter() - start, 2)
        figures[f"culane_{mode}_f1_50"] = round(results[mode].f1(0.5), 5)
        figures[f"culane_{mode}_mf1"] = round(results[mode].mf1(), 5)
    tus_preds, tus_gts = tusimple_like(args.images)
    start = time.perf_counter()
    tusimple = tusimple_eval(tus_preds, tus_gts)
    figures["tusimple_s"] = round(time.perf_counter() - start, 2)
    figures["tusimple_accuracy"] = round(tusimple.accuracy, 5)

    if args.json:
        print(json.dumps(figures))
        return
    print(f"CPU: {figures['cpu']}")
    for mode, result in results.items():
        print(result.table())
        print(f"{args.images} images in {figures[f'culane_{mode}_s']} s\n")
    print(tusimple.table())
    print(f"{args.images} images in {figures['tusimple_s']} s")


if __name__ == "__main__":
    main()
