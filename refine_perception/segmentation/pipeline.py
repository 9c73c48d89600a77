"""The street segmenter's per-frame work on plain data: a BGR image in; the label image of the chosen
LRN stage (Cityscapes label ids), the car / person instances with track ids, and the time of each phase out.

No ROS here: the street_segmenter node and the offline tools reach it through the same message conversion
(ros/street_messages.py), so offline figures are those of the node's own code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from refine_perception.boundaries.stage import BoundaryStage
from refine_perception.core.image_codec import MAX_IMAGE_PIXELS
from refine_perception.core.settings import FromParams
from refine_perception.instances.result import InstanceResult
from refine_perception.models.bpr.refine import INFERENCE_NMS
from refine_perception.models.lrn.network import STAGE_STRIDES
from refine_perception.runtime import RuntimeConfig
from refine_perception.segmentation.predict import StreetPredictor
from refine_perception.segmentation.tracking import MaskTracker
from refine_perception.share import STREET_MODEL, shipped_model

VOID_LABEL_ID = 255  # the label image's value for no class (predictions never use it; the ClassMap names it)


def default_street_model_path() -> Path:
    return shipped_model(STREET_MODEL)


@dataclass
class StreetSettings(FromParams):
    """The street_segmenter parameters that shape its output (same names and defaults as the node's)."""

    stage: int = len(STAGE_STRIDES)  # which label map is published: 1 = coarsest (1/32) .. 5 = finest (1/2)
    instances: bool = True
    score_threshold: float = 0.5
    track_iou: float = 0.3
    track_max_missed: int = 5
    max_image_pixels: int = MAX_IMAGE_PIXELS
    refine_boundaries: bool = False
    boundary_nms: float = INFERENCE_NMS


def open_street_predictor(model: str, backend: str = "auto", device: str = "", precision: str = "auto",
                          threads: int = 0, settings: StreetSettings | None = None) -> tuple[StreetPredictor, str]:
    """The predictor of `model` (empty: the shipped default) on the runtime backend asked for, and a
    description of it; without instances (`settings`), the network stops at the published stage.
    Raises ModelFileError/BackendError/UnsupportedCombination."""
    path = Path(model) if model else default_street_model_path()
    s = settings or StreetSettings()
    predictor, info = StreetPredictor.from_file(path, RuntimeConfig.of_node(backend, device, precision, threads),
                                                stages=s.stage, instances=s.instances)
    return predictor, str(info)


class StreetFrame(NamedTuple):
    """One frame's output: the BGR image, the label image (H, W) uint8 of Cityscapes label ids, the
    instances (class_id: label id) with their track ids, and milliseconds per phase."""

    image: np.ndarray
    label_ids: np.ndarray
    results: list[InstanceResult]
    track_ids: list[int]
    timings_ms: dict[str, float]


class StreetPipeline:
    """Per frame: the network, the chosen stage's label map, the instances and their tracks."""

    def __init__(self, predictor: StreetPredictor, settings: StreetSettings, refiner: BoundaryStage | None = None) -> None:
        if not 1 <= settings.stage <= predictor.stages or (settings.instances and not predictor.embedding):
            raise ValueError(f"stage {settings.stage}{' with instances' if settings.instances else ''} is not "
                             f"computed by this predictor (stages 1..{predictor.stages}, embedding "
                             f"{predictor.embedding})")
        self.predictor = predictor
        self.settings = settings
        self.refiner = refiner  # refines the instance masks when refine_boundaries is set
        self.tracker = MaskTracker(settings.track_iou, settings.track_max_missed)
        self.label_ids = np.asarray(predictor.label_ids, np.uint8)
        self.names = {label_id: name for label_id, name in zip(predictor.label_ids, predictor.class_names)}

    def __call__(self, image: np.ndarray) -> StreetFrame:
        s = self.settings
        self.tracker.min_iou, self.tracker.max_missed = s.track_iou, s.track_max_missed
        timings: dict[str, float] = {}
        (result,) = self.predictor([image], stages=[s.stage - 1], instances=s.instances, timings=timings)
        started = time.perf_counter()
        found = [p for p in result.instances if p.score >= s.score_threshold]
        masks = [p.mask for p in found]
        if self.refiner is not None and s.refine_boundaries and found:
            masks = self.refiner(image, masks, s.boundary_nms)
            timings["boundaries"] = self.refiner.last.ms
            started = time.perf_counter()
        results = [InstanceResult(mask, p.score, p.class_id, self.names[p.class_id])
                   for p, mask in zip(found, masks) if mask.any()]
        track_ids = self.tracker.update([r.class_id for r in results], [r.mask for r in results])
        timings["tracking"] = 1e3 * (time.perf_counter() - started)
        return StreetFrame(image, self.label_ids[result.stage_labels[0]], results, track_ids, timings)
