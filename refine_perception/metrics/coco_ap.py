"""COCO mask AP and Boundary AP, computed by pycocotools' COCOeval on datasets built in memory.

Mask AP is COCOeval with iouType "segm" unchanged: IoU thresholds 0.50:0.05:0.95, 101 recall points,
at most 100 detections per image, area ranges small < 32^2 <= medium < 96^2 <= large (mask area).
Boundary AP (Cheng et al. 2021) is the same evaluation with the matching IoU of a (prediction, ground
truth) pair replaced by min(mask IoU, Boundary IoU), except against crowd regions, which keep the mask
IoU, as boundary-iou-api's `computeBoundaryIoU` does; boundaries use `dilation_ratio` of the image
diagonal (0.02 for COCO-like data, 0.005 for Cityscapes' image size).
Summary figures where pycocotools prints -1 (no ground truth in that area range) are NaN here; a class
without ground truth has AP NaN and does not enter the mean, as in COCOeval.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from refine_perception.metrics.boundary import COCO_DILATION_RATIO, mask_boundary
from refine_perception.metrics.instances import (
    APResult,
    GtInstance,
    MaskLike,
    PredInstance,
    check_class_score,
    to_mask,
    to_rle,
)

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


class _BoundaryEval(COCOeval):
    """COCOeval matching on min(mask IoU, Boundary IoU); every annotation carries a 'boundary' RLE."""

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802, N803 (pycocotools' names)
        ious = super().computeIoU(imgId, catId)
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if not gt or not dt:
            return ious
        # the order and cut of the detections COCOeval.computeIoU uses for the rows of `ious`
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")[: self.params.maxDets[-1]]
        crowd = [int(g["iscrowd"]) for g in gt]
        b_ious = np.asarray(coco_mask.iou([dt[i]["boundary"] for i in order], [g["boundary"] for g in gt], crowd))
        regular = ~np.asarray(crowd, bool)
        ious[:, regular] = np.minimum(ious[:, regular], b_ious[:, regular])
        return ious


def _annotation(
    mask: MaskLike, ann_id: int, image_id: int, class_id: int, boundary_ratio: float | None, where: str
) -> dict:
    coded = to_rle(mask, where)
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(class_id),
        "segmentation": coded,
        "area": float(coco_mask.area(coded)),
        "bbox": coco_mask.toBbox(coded).tolist(),
    }
    if boundary_ratio is not None:
        ann["boundary"] = to_rle(mask_boundary(to_mask(coded, where), boundary_ratio), where)
    return ann


def _coco(images: list[dict], annotations: list[dict], class_ids: list[int]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in class_ids]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _build(
    gt: Sequence[Sequence[GtInstance]], pred: Sequence[Sequence[PredInstance]], boundary_ratio: float | None
) -> tuple[COCO, COCO, list[int]]:
    if len(gt) != len(pred):
        raise ValueError(f"{len(gt)} ground-truth images but {len(pred)} prediction images")
    if not gt:
        raise ValueError("no images to evaluate")
    images: list[dict] = []
    gt_anns: list[dict] = []
    dt_anns: list[dict] = []
    for index, (gt_image, pred_image) in enumerate(zip(gt, pred)):
        image_id = index + 1
        first_gt, first_dt = len(gt_anns), len(dt_anns)
        for k, g in enumerate(gt_image):
            where = f"image {index}, ground truth {k}"
            check_class_score(g.class_id, None, where)
            ann = _annotation(g.mask, len(gt_anns) + 1, image_id, g.class_id, boundary_ratio, where)
            gt_anns.append({**ann, "iscrowd": int(bool(g.iscrowd))})
        for k, p in enumerate(pred_image):
            where = f"image {index}, prediction {k}"
            check_class_score(p.class_id, p.score, where)
            ann = _annotation(p.mask, len(dt_anns) + 1, image_id, p.class_id, boundary_ratio, where)
            dt_anns.append({**ann, "iscrowd": 0, "score": float(p.score)})
        sizes = {tuple(a["segmentation"]["size"]) for a in gt_anns[first_gt:] + dt_anns[first_dt:]}
        if len(sizes) > 1:
            raise ValueError(f"image {index}: its masks differ in size: {sorted(sizes)}")
        height, width = sizes.pop() if sizes else (0, 0)
        images.append({"id": image_id, "height": height, "width": width})
    class_ids = sorted({a["category_id"] for a in gt_anns + dt_anns})
    return _coco(images, gt_anns, class_ids), _coco(images, dt_anns, class_ids), class_ids


def _nan_if_absent(values: np.ndarray) -> float:
    """Mean over the entries COCOeval filled (-1 marks none), NaN if there are none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _evaluate(
    gt: Sequence[Sequence[GtInstance]],
    pred: Sequence[Sequence[PredInstance]],
    class_names: Mapping[int, str] | None,
    boundary_ratio: float | None,
    title: str,
) -> APResult:
    gt_coco, dt_coco, class_ids = _build(gt, pred, boundary_ratio)
    evaluator = (COCOeval if boundary_ratio is None else _BoundaryEval)(gt_coco, dt_coco, "segm")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    summary = {key: float("nan") if v == -1 else float(v) for key, v in zip(SUMMARY_KEYS, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [IoU threshold, recall point, class, area range, max dets]
    names = class_names or {}
    per_class = {
        names.get(c, str(c)): {
            "AP": _nan_if_absent(precision[:, :, k, 0, -1]),
            "AP50": _nan_if_absent(precision[0, :, k, 0, -1]),
            "AP75": _nan_if_absent(precision[5, :, k, 0, -1]),
        }
        for k, c in enumerate(class_ids)
    }
    return APResult(title, summary, per_class)


def coco_mask_ap(
    gt: Sequence[Sequence[GtInstance]],
    pred: Sequence[Sequence[PredInstance]],
    class_names: Mapping[int, str] | None = None,
) -> APResult:
    """COCO mask AP of per-image predictions against per-image ground truth (same image order)."""
    return _evaluate(gt, pred, class_names, None, "COCO mask AP")


def coco_boundary_ap(
    gt: Sequence[Sequence[GtInstance]],
    pred: Sequence[Sequence[PredInstance]],
    dilation_ratio: float = COCO_DILATION_RATIO,
    class_names: Mapping[int, str] | None = None,
) -> APResult:
    """Boundary AP: COCO AP matching on min(mask IoU, Boundary IoU)."""
    return _evaluate(gt, pred, class_names, dilation_ratio, f"COCO boundary AP (dilation ratio {dilation_ratio:g})")
