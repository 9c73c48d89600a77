"""Instance and grasp figures of a sequence of frames: per frame the ground truth and the node's output as
`InstanceResult`s (None where the node published nothing for the frame: counted, and scored as an empty
output, so a dropped frame costs what missing every stick costs).

- Mask AP, AP50, AP75: COCO's, by metrics.coco_ap, over every predicted instance.
- Boundary F: the one BPR reports (openseg's F1 running score, metrics.boundary) on instance label maps
  (0 table, 1.. instances), so the contact line between two touching sticks is a boundary as well as the
  outline; tolerance ceil(0.00088 x image diagonal) pixels unless given (1 px up to 1136 px of
  diagonal), averaged over the frames.
- mIoU: stick against table over all pixels (metrics.semantic).
  Boundary F, mIoU and the per-frame matches take the instances with score >= `score_threshold`, a
  higher score owning the pixels two of them claim: a hard segmentation, as a robot would use it.
- Grasps. A free stick is a truth instance with a grasp; sticks_truth gives it its exact grasp (width
  = the stick's width) and its whole silhouette's box, from which its axis segment in metres is the
  grasp point +- (box length - box width) / 2 pixels along the axis, scaled by grasp width / box width
  (metres per pixel on the stick's top). A predicted grasp succeeds when its position lies within the
  stick's radius of a free stick's axis segment in the plane perpendicular to the optical axis, and its
  closing direction is within 20 degrees of perpendicular to that axis. The success rate is over the
  frames with a free stick, taking each frame's highest-scoring grasp (none: a failure); the confident
  rate is over all grasps scoring >= `score_threshold`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from refine_perception.instances.result import Grasp, InstanceResult, OrientedBox
from refine_perception.metrics.boundary import boundary_f_score, tolerance_from_ratio
from refine_perception.metrics.coco_ap import coco_mask_ap
from refine_perception.metrics.instances import APResult, GtInstance, PredInstance, json_float
from refine_perception.metrics.semantic import SemanticConfusion

GRASP_ANGLE_DEG = 20.0
MATCH_IOU = 0.5


@dataclass
class FrameInstanceScore:
    """One frame: instance matches at mask IoU 0.5 (confident predictions, each truth matched once, by
    decreasing score), boundary F, stick IoU and whether its best grasp succeeded (None: no free stick)."""

    index: int
    tp: int
    fp: int
    fn: int
    boundary_f: float
    stick_iou: float
    grasp_success: bool | None

    @property
    def errors(self) -> int:
        """Missed and spurious sticks, plus one for a failed grasp: what ranks the worst frames."""
        return self.fp + self.fn + int(self.grasp_success is False)


@dataclass
class InstanceScores:
    frames: int
    frames_without_output: int
    score_threshold: float
    mask_ap: APResult
    boundary_f: float
    boundary_tolerance_px: int
    semantic: SemanticConfusion
    grasp_frames: int = 0  # frames with a free stick
    grasp_successes: int = 0
    confident_grasps: int = 0
    confident_successes: int = 0
    per_frame: list[FrameInstanceScore] = field(default_factory=list)

    @property
    def grasp_success_rate(self) -> float | None:
        return self.grasp_successes / self.grasp_frames if self.grasp_frames else None

    @property
    def confident_success_rate(self) -> float | None:
        return self.confident_successes / self.confident_grasps if self.confident_grasps else None

    def to_dict(self) -> dict[str, Any]:
        summary = self.mask_ap.summary
        return {
            "frames": self.frames,
            "frames_without_output": self.frames_without_output,
            "score_threshold": self.score_threshold,
            "mask_AP": json_float(summary["AP"]),
            "mask_AP50": json_float(summary["AP50"]),
            "mask_AP75": json_float(summary["AP75"]),
            "boundary_F": json_float(self.boundary_f),
            "boundary_tolerance_px": self.boundary_tolerance_px,
            **self.semantic.to_dict(),
            "grasp_success_rate": self.grasp_success_rate,
            "grasp_frames": self.grasp_frames,
            "confident_grasp_success_rate": self.confident_success_rate,
            "confident_grasps": self.confident_grasps,
            "per_frame": [{**asdict(f), "boundary_f": json_float(f.boundary_f), "stick_iou": json_float(f.stick_iou)}
                          for f in self.per_frame],
        }


@dataclass(frozen=True)
class _Axis:
    """A free stick's axis segment in the camera frame's x-y plane (metres)."""

    centre: np.ndarray
    direction: np.ndarray
    half_length: float
    radius: float


def _axis(grasp: Grasp, box: OrientedBox | None, where: str) -> _Axis:
    if box is None or not box.width > 0:
        raise ValueError(f"{where}: a ground-truth instance with a grasp needs its box (its axis length)")
    closing = np.asarray(grasp.closing[:2], np.float64)
    direction = np.array([closing[1], -closing[0]]) / np.linalg.norm(closing)
    half_length = max(box.length - box.width, 0.0) / 2 * grasp.width / box.width
    return _Axis(np.asarray(grasp.position[:2], np.float64), direction, half_length, grasp.width / 2)


def _hits(grasp: Grasp, axis: _Axis) -> bool:
    """The success rule of the module docstring for one grasp and one free stick."""
    offset = np.asarray(grasp.position[:2], np.float64) - axis.centre
    along = float(np.clip(offset @ axis.direction, -axis.half_length, axis.half_length))
    if np.linalg.norm(offset - along * axis.direction) > axis.radius:
        return False
    closing = np.asarray(grasp.closing, np.float64)
    cosine = abs(closing[:2] @ axis.direction) / max(float(np.linalg.norm(closing)), 1e-12)
    return cosine <= math.sin(math.radians(GRASP_ANGLE_DEG))


def _masks(results: Sequence[InstanceResult], size: tuple[int, int], where: str) -> np.ndarray:
    masks = np.zeros((len(results), *size), bool)
    for k, result in enumerate(results):
        mask = np.asarray(result.mask)
        if mask.dtype != bool or mask.shape != size:
            raise ValueError(f"{where} {k}: mask must be bool {size[0]}x{size[1]}, got {mask.dtype} {mask.shape}")
        masks[k] = mask
    return masks


def _labels(masks: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Label map with instance k + 1 where mask k is, painted in `order` (the last painted wins)."""
    labels = np.zeros(masks.shape[1:], np.int32)
    for k in order:
        labels[masks[k]] = k + 1
    return labels


def instance_label_maps(gt_masks: np.ndarray, pred_masks: np.ndarray, scores: np.ndarray,
                        score_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One frame's instance label maps (ground truth, prediction) from (K, H, W) masks: the predictions scoring
    at least `score_threshold`, painted by increasing score so the surer one wins where two overlap."""
    confident = np.flatnonzero(scores >= score_threshold)
    gt_labels = _labels(gt_masks, range(len(gt_masks)))
    return gt_labels, _labels(pred_masks, confident[np.argsort(scores[confident], kind="stable")])


def _matches(truth: np.ndarray, pred: np.ndarray, scores: np.ndarray) -> int:
    """True positives: predictions by decreasing score, each taking the unmatched truth of highest IoU
    when it is >= MATCH_IOU."""
    if not len(truth) or not len(pred):
        return 0
    t, p = truth.reshape(len(truth), -1).astype(np.float32), pred.reshape(len(pred), -1).astype(np.float32)
    inter = p @ t.T
    ious = inter / (p.sum(1)[:, None] + t.sum(1)[None, :] - inter)
    unmatched = np.ones(len(truth), bool)
    for k in np.argsort(-scores, kind="stable"):
        candidates = np.where(unmatched, ious[k], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= MATCH_IOU:
            unmatched[best] = False
    return int((~unmatched).sum())


def _image_size(truth: Sequence[Sequence[InstanceResult]], predictions: Sequence[Sequence[InstanceResult] | None]
                ) -> tuple[int, int]:
    for frame in list(truth) + [p for p in predictions if p is not None]:
        for result in frame:
            shape = np.shape(result.mask)
            if len(shape) == 2:
                return int(shape[0]), int(shape[1])
    raise ValueError("no masks in any frame: the image size is unknown")


def score_instance_frames(
    truth: Sequence[list[InstanceResult]],
    predictions: Sequence[list[InstanceResult] | None],
    score_threshold: float = 0.5,
    boundary_tolerance_px: int | None = None,
) -> InstanceScores:
    """Score frame k's `predictions[k]` against `truth[k]` (all frames of one image size)."""
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} ground-truth frames but {len(predictions)} prediction entries")
    if not truth:
        raise ValueError("no frames to score")
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
    size = _image_size(truth, predictions)
    tolerance = tolerance_from_ratio(size) if boundary_tolerance_px is None else boundary_tolerance_px
    semantic = SemanticConfusion(2, class_names=["table", "stick"])
    frames: list[FrameInstanceScore] = []
    grasp_frames = grasp_successes = confident_grasps = confident_successes = 0
    for index, (gts, output) in enumerate(zip(truth, predictions)):
        preds = output or []
        gt_masks = _masks(gts, size, f"frame {index}: ground truth")
        pred_masks = _masks(preds, size, f"frame {index}: prediction")
        scores = np.array([p.score for p in preds], np.float64)
        confident = np.flatnonzero(scores >= score_threshold)
        gt_labels, pred_labels = instance_label_maps(gt_masks, pred_masks, scores, score_threshold)
        boundary = boundary_f_score(pred_labels, gt_labels, tolerance).f
        gt_stick, pred_stick = gt_labels > 0, pred_labels > 0
        semantic.update(pred_stick.astype(np.uint8), gt_stick.astype(np.uint8))
        union = np.count_nonzero(gt_stick | pred_stick)
        stick_iou = np.count_nonzero(gt_stick & pred_stick) / union if union else 1.0
        tp = _matches(gt_masks, pred_masks[confident], scores[confident])

        axes = [_axis(t.grasp, t.box, f"frame {index}: ground truth {k}") for k, t in enumerate(gts) if t.grasp]
        grasps = [p.grasp for p in preds if p.grasp is not None]
        success = None
        if axes:
            best = max(grasps, key=lambda g: g.score, default=None)
            success = best is not None and any(_hits(best, axis) for axis in axes)
            grasp_frames += 1
            grasp_successes += int(success)
        for grasp in grasps:
            if grasp.score >= score_threshold:
                confident_grasps += 1
                confident_successes += int(any(_hits(grasp, axis) for axis in axes))
        frames.append(FrameInstanceScore(index, tp, len(confident) - tp, len(gts) - tp, boundary, stick_iou, success))

    names = {r.class_id: r.class_name for frame in (*truth, *(p for p in predictions if p)) for r in frame}
    ap = coco_mask_ap([[GtInstance(t.class_id, t.mask) for t in gts] for gts in truth],
                      [[PredInstance(p.class_id, p.mask, p.score) for p in output or []] for output in predictions],
                      names)
    return InstanceScores(
        frames=len(truth), frames_without_output=sum(p is None for p in predictions), score_threshold=score_threshold,
        mask_ap=ap, boundary_f=float(np.mean([f.boundary_f for f in frames])), boundary_tolerance_px=tolerance,
        semantic=semantic, grasp_frames=grasp_frames, grasp_successes=grasp_successes,
        confident_grasps=confident_grasps, confident_successes=confident_successes, per_frame=frames,
    )  # fmt: skip
