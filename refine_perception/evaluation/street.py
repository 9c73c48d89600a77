"""Scores of the street segmenter over a run's frames: per-class IoU of its label images (Cityscapes
semantics: void ground truth left out), boundary F at 3 px, and its car / person instances by COCO mask
AP and Cityscapes AP against the frames' instance ids.

A frame without output counts every valid pixel of it as missed and every object as missed, which is what
a vehicle relying on the node lives with. The evaluated classes are the street generator's; ground truth
of other Cityscapes classes (a real Cityscapes bag) is void for the IoU and the boundary F.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from refine_perception.data.formats.cityscapes import instances_of
from refine_perception.instances.result import InstanceResult
from refine_perception.metrics.boundary import SemanticBoundaryF
from refine_perception.metrics.cityscapes_ap import cityscapes_ap
from refine_perception.metrics.coco_ap import coco_mask_ap
from refine_perception.metrics.instances import APResult, GtInstance, PredInstance, json_float, mask_iou, to_rle
from refine_perception.metrics.semantic import SemanticConfusion
from refine_perception.segmentation.classes import (
    IGNORE_LABEL,
    STREET_CLASSES,
    STREET_INSTANCE_CLASSES,
    class_lookup,
    label_ids_of,
)

BOUNDARY_TOLERANCE_PX = 3
MATCH_IOU = 0.5


@dataclass(frozen=True)
class FrameStreetScore:
    """One frame: the share of its valid pixels labelled wrongly, and its objects matched at mask IoU 0.5
    (each ground-truth object once, predictions by decreasing score)."""

    index: int
    pixel_error: float
    tp: int
    fp: int
    fn: int

    @property
    def errors(self) -> float:
        """What ranks the worst frames: missed and spurious objects plus the wrong pixels in percent."""
        return self.fp + self.fn + 100 * self.pixel_error


@dataclass
class StreetScores:
    frames: int
    frames_without_output: int
    semantic: SemanticConfusion
    boundary: SemanticBoundaryF
    coco: APResult
    cityscapes: APResult
    per_frame: list[FrameStreetScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "frames_without_output": self.frames_without_output,
            **self.semantic.to_dict(),
            "boundary_F": json_float(self.boundary.mean()),
            "boundary_tolerance_px": self.boundary.tolerance_px,
            "coco_mask_ap": self.coco.to_dict(),
            "cityscapes_ap": self.cityscapes.to_dict(),
            "per_frame": [{**asdict(f), "pixel_error": json_float(f.pixel_error)} for f in self.per_frame],
        }


def _matches(truth: Sequence[np.ndarray], predictions: Sequence[np.ndarray]) -> int:
    """Ground-truth masks matched at IoU >= MATCH_IOU by predictions taken in the given order."""
    free = list(range(len(truth)))
    matched = 0
    for mask in predictions:
        best, best_iou = -1, MATCH_IOU
        for k in free:
            iou = mask_iou(mask, truth[k])
            if iou >= best_iou:
                best, best_iou = k, iou
        if best >= 0:
            free.remove(best)
            matched += 1
    return matched


def score_street_frames(truth_labels: Sequence[np.ndarray], truth_ids: Sequence[np.ndarray],
                        labels: Sequence[np.ndarray | None],
                        instances: Sequence[Sequence[InstanceResult] | None]) -> StreetScores:
    """Score each frame's label ids (None: no output) and instances (class_id: Cityscapes label id)
    against its label-id and instance-id images."""
    if not len(truth_labels) == len(truth_ids) == len(labels) == len(instances):
        raise ValueError("one ground truth pair, label image and instance list per frame")
    lookup = class_lookup(label_ids_of(STREET_CLASSES))
    things = set(label_ids_of(STREET_INSTANCE_CLASSES))
    semantic = SemanticConfusion(len(STREET_CLASSES), IGNORE_LABEL, STREET_CLASSES)
    boundary = SemanticBoundaryF(len(STREET_CLASSES), BOUNDARY_TOLERANCE_PX, IGNORE_LABEL, STREET_CLASSES)
    gt_instances: list[list[GtInstance]] = []
    predictions: list[list[PredInstance]] = []
    per_frame = []
    for index, (gt_labels, gt_ids, predicted, found) in enumerate(zip(truth_labels, truth_ids, labels, instances)):
        if predicted is not None and predicted.shape != gt_labels.shape:
            raise ValueError(f"frame {index}: label image {predicted.shape} differs from the ground truth's "
                             f"{gt_labels.shape}")
        truth = lookup[gt_labels]
        guess = np.full(truth.shape, IGNORE_LABEL, np.uint8) if predicted is None else lookup[predicted]
        semantic.update(guess, truth)
        boundary.update(guess, truth)
        valid = truth != IGNORE_LABEL
        objects = [(instance.class_id, instance.mask) for instance in instances_of(gt_ids, things)]
        gt_instances.append([GtInstance(c, to_rle(m, "ground truth")) for c, m in objects])
        results = sorted(found or [], key=lambda r: -r.score)
        predictions.append([PredInstance(r.class_id, to_rle(r.mask, "prediction"), r.score) for r in results])
        tp = sum(_matches([m for c, m in objects if c == cls], [r.mask for r in results if r.class_id == cls])
                 for cls in things)
        wrong = np.count_nonzero((guess != truth) & valid) / max(np.count_nonzero(valid), 1)
        per_frame.append(FrameStreetScore(index, float(wrong), tp, len(results) - tp, len(objects) - tp))
    names = dict(zip(label_ids_of(STREET_INSTANCE_CLASSES), STREET_INSTANCE_CLASSES))
    return StreetScores(len(truth_labels), sum(p is None for p in labels), semantic, boundary,
                        coco_mask_ap(gt_instances, predictions, names),
                        cityscapes_ap([ids.astype(np.uint16) for ids in truth_ids], predictions), per_frame)
