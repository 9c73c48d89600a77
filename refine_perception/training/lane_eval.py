"""Scoring a lane model on annotated images: the CULane metric (per category), the TuSimple metric, and
the accuracy of the predicted lane type and colour on the lanes it found.

Predictions are sampled the way the official tools expect: for CULane at every 8th row from the crop
line down (rows 270, 278, ... 582 of a 1640x590 frame), for TuSimple at the label's h_samples.
Type and colour are judged on the lanes CULane's F1@50 counts as true positives (`metrics.lane_matching`:
the official matching, IoU strictly above 0.5), against the annotated labels (unlabelled lanes are not
counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from refine_perception.metrics.culane import ROW_STEP as CULANE_ROW_STEP
from refine_perception.metrics.culane import CULaneResult, culane_f1, lane_ious
from refine_perception.metrics.lane_matching import AttributeTally, true_positive_pairs
from refine_perception.models.clrnet.decode import DecodeSettings, sample_lane
from refine_perception.models.clrnet.loss import UNLABELLED
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.clrnet.predict import LanePrediction, LanePredictor
from refine_perception.training.config import ValidationConfig
from refine_perception.training.lane_data import LaneRecord, LaneSource


def culane_rows(height: int, cut_height: int) -> np.ndarray:
    return np.arange(cut_height, height, CULANE_ROW_STEP)


def predict_records(predictor: LanePredictor, records: Iterable[LaneRecord],
                    batch_size: int) -> Iterator[tuple[LaneRecord, LanePrediction]]:
    """(record, prediction) pairs, running the network on batches of `batch_size` images."""
    batch: list[LaneRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == batch_size:
            yield from zip(batch, predictor([r.image for r in batch]))
            batch = []
    if batch:
        yield from zip(batch, predictor([r.image for r in batch]))


def sampled(prediction: LanePrediction, rows: np.ndarray, width: int, height: int) -> tuple[list[np.ndarray], list[int]]:
    """The predicted lanes resampled at `rows` as the official writers do, less those left with < 2 points,
    and the prediction's indices of the lanes kept (their types and colours)."""
    lanes = [sample_lane(lane, rows, width, height) for lane in prediction.lanes]
    kept = [k for k, lane in enumerate(lanes) if len(lane) >= 2]
    return [lanes[k] for k in kept], kept


def score_culane(predictor: LanePredictor, records: Iterable[LaneRecord], batch_size: int,
                 workers: int | None = 1) -> tuple[CULaneResult, AttributeTally]:
    """CULane F1 (IoU 0.50:0.05:0.95, per category) and type/colour accuracy over `records` (all of one size)."""
    preds: list[list[np.ndarray]] = []
    gts: list[list[np.ndarray]] = []
    categories: list[str | None] = []
    tally = AttributeTally()
    size: tuple[int, int] | None = None
    for record, prediction in predict_records(predictor, records, batch_size):
        height, width = record.image.shape[:2]
        if size is None:
            size = (width, height)
        elif size != (width, height):
            raise ValueError(f"{record.name}: {width}x{height}, the other images are {size[0]}x{size[1]}; "
                             "score each image size separately")
        lanes, kept = sampled(prediction, culane_rows(height, predictor.settings.cut_height), width, height)
        preds.append(lanes)
        gts.append(list(record.lanes))
        categories.append(record.category)
        if record.lanes and lanes:
            pairs = true_positive_pairs(lane_ious(list(record.lanes), lanes, image_size=size))
            tally.add(pairs, record.types, record.colors, prediction.types[kept].tolist(),
                      prediction.colors[kept].tolist(), UNLABELLED)
    has_categories = any(c is not None for c in categories)
    result = culane_f1(preds, gts, categories=categories if has_categories else None,
                       image_size=size or (1640, 590), workers=workers)
    return result, tally


def evaluate_culane(model: CLRNet, config: ValidationConfig, device: torch.device | str = "cpu") -> CULaneResult:
    """The validation datasets of a training config scored with the CULane metric (as one set)."""
    records: list[Iterable[LaneRecord]] = []
    cut_heights = {dataset.cut_height for dataset in config.datasets}
    if len(cut_heights) != 1:
        raise ValueError(f"validation datasets must share one cut_height, got {sorted(cut_heights)}")
    for dataset in config.datasets:
        source = LaneSource(dataset)
        records.append(source[i] for i in range(len(source)))
    settings = DecodeSettings(cut_height=cut_heights.pop(), conf_threshold=config.conf_threshold,
                              nms_threshold=config.nms_threshold, max_lanes=config.max_lanes)
    predictor = LanePredictor.from_model(model, settings, device)
    result, _ = score_culane(predictor, (r for source in records for r in source), config.batch_size)
    return result
