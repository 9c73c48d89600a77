"""The held-out tests of the shipped models, on synthetic scenes of a seed no training config uses (scene i
depends only on (seed, i), so the split is the same on every machine).

Lanes: the official CULane protocol (C++ evaluator rules, 1640x590, per category), the TuSimple protocol
(LaneEval on the 1280x720 rendering of the same scenes) and the accuracy of the predicted lane type and
colour; scenes rendered on the fly or read from a split written by `refine-perception data generate lanes
--split test`. Instances: stick scenes as the instance segmenter sees them, scored like a replay.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from refine_perception.data.formats.tusimple import H_SAMPLES, TuSimpleRecord
from refine_perception.data.synthetic.parallel import ordered_map
from refine_perception.metrics.table import format_table
from refine_perception.metrics.tusimple import tusimple_eval_with_lanes
from refine_perception.models.bpr.refine import INFERENCE_NMS
from refine_perception.models.clrnet.decode import DecodeSettings, sample_lane
from refine_perception.models.clrnet.predict import LanePredictor
from refine_perception.runtime import RuntimeConfig, open_network
from refine_perception.training.config import DatasetConfig
from refine_perception.training.lane_data import LaneRecord, LaneSource
from refine_perception.training.lane_eval import predict_records, score_culane

CULANE_CUT = 270
TUSIMPLE_CUT = 160
TUSIMPLE_WIDTH = 1280
BOUNDARY_TOLERANCE_PX = 3  # the boundary F of the segmentation issues: 3 px at the camera's size
CROWDED_STICKS = 8  # the instance test also reports scenes with at least this many sticks on their own


def _render(job: tuple[DatasetConfig, int]) -> LaneRecord:
    config, index = job
    return LaneSource(config)[index]


def _records(config: DatasetConfig, num: int, workers: int, desc: str, progress: bool) -> Iterator[LaneRecord]:
    source = LaneSource(config)
    count = min(num, len(source))
    if config.kind == "synthetic":
        return ordered_map(_render, [(config, i) for i in range(count)], workers, progress, desc)
    return iter(tqdm((source[i] for i in range(count)), total=count, desc=desc, unit="img", disable=not progress))


def evaluate_heldout(weights: str | Path, num: int = 2000, seed: int = 2, data: str | Path | None = None,
                     workers: int = 2, batch_size: int = 8, progress: bool = True,
                     runtime: tuple[str, str] = ("torch", "fp32"), int8_weight_bits: int = 0) -> dict[str, Any]:
    """Score `weights` on `num` held-out scenes; returns the figures and a printable table. The network runs
    on the runtime's (backend, precision) = `runtime` on the CPU, as the lanes node does (int8 with this
    CPU's weights, or `int8_weight_bits` 7 / 8); torch fp32 is the reference."""
    started = time.perf_counter()
    backend, precision = runtime
    network = open_network(weights, RuntimeConfig(backend, "cpu", precision, threads=workers,
                                                  int8_weight_bits=int8_weight_bits))
    metadata = network.metadata
    if data is None:
        culane = DatasetConfig(kind="synthetic", seed=seed, size=num, framing="culane", cut_height=CULANE_CUT)
        tusimple = DatasetConfig(kind="synthetic", seed=seed, size=num, framing="tusimple", cut_height=TUSIMPLE_CUT)
    else:
        root = Path(data)
        culane = DatasetConfig(kind="culane", root=str(root / "culane"), list_file="list/test.txt", cut_height=CULANE_CUT)
        tusimple = DatasetConfig(kind="tusimple", root=str(root / "tusimple"), label_files=("test_label.json",),
                                 cut_height=TUSIMPLE_CUT)

    predictor = LanePredictor(network, network.input_size, DecodeSettings(cut_height=CULANE_CUT))
    result, tally = score_culane(predictor, _records(culane, num, workers, "CULane protocol", progress),
                                 batch_size, workers=workers)

    predictor = LanePredictor(network, network.input_size, DecodeSettings(cut_height=TUSIMPLE_CUT, max_lanes=5))
    preds: list[TuSimpleRecord] = []
    gts: list[TuSimpleRecord] = []
    records = _records(tusimple, num, workers, "TuSimple protocol", progress)
    for record, prediction in predict_records(predictor, records, batch_size):
        height, width = record.image.shape[:2]
        lanes = [sample_lane(lane, H_SAMPLES, width, height) for lane in prediction.lanes]
        lanes = [lane for lane in lanes if len(lane) >= 2]
        preds.append(TuSimpleRecord.from_lanes(record.name, lanes, H_SAMPLES, image_width=width))
        gts.append(TuSimpleRecord.from_lanes(record.name, list(record.lanes), H_SAMPLES, image_width=width))
    tusimple_result, laneless = tusimple_eval_with_lanes(preds, gts)

    categories = [c for c in result.counts if c != "all"]
    rows = [["category", "images", "F1@50", "F1@75", "mF1"]]
    for name in ["all", *categories]:
        rows.append([name, str(result.images[name]), f"{100 * result.f1(0.5, name):.2f}",
                     f"{100 * result.f1(0.75, name):.2f}", f"{100 * result.mf1(name):.2f}"])
    seconds = time.perf_counter() - started
    table = "\n".join([
        f"held-out synthetic test: {num} scenes of seed {seed}" + (f" from {data}" if data else " (rendered)"),
        f"weights: {weights} ({metadata.get('backbone')}, input {metadata.get('input_height')}x"
        f"{metadata.get('input_width')}) on {network.info}",
        "CULane protocol (official C++ rules, 1640x590):",
        format_table(rows),
        f"TuSimple protocol (1280x720, {tusimple_result.images} scenes with lanes): accuracy "
        f"{100 * tusimple_result.accuracy:.2f}  FP {100 * tusimple_result.fp:.2f}  FN {100 * tusimple_result.fn:.2f}  "
        f"F1 {100 * tusimple_result.f1:.2f}; {laneless['images']} scenes without lanes left out (LaneEval "
        f"scores them 0 whatever is predicted), {laneless['false_lanes']} lanes predicted on "
        f"{laneless['images_with_false_lanes']} of them",
        f"lane type accuracy {_pct(tally.type_accuracy)} ({tally.type_total} matched lanes), "
        f"colour accuracy {_pct(tally.color_accuracy)} ({tally.color_total})",
        f"{seconds:.0f} s",
    ])
    return {
        "weights": str(weights),
        "sha256": metadata.get("sha256"),
        "seed": seed,
        "images": num,
        "network": str(network.info),
        "culane": result.to_dict(),
        "tusimple": tusimple_result.to_dict(),
        "tusimple_laneless": laneless,
        "lane_type_accuracy": tally.type_accuracy,
        "lane_type_matched": tally.type_total,
        "lane_colour_accuracy": tally.color_accuracy,
        "lane_colour_matched": tally.color_total,
        "seconds": round(seconds, 1),
        "table": table,
        "f1_50": result.f1(0.5),
        "f1_75": result.f1(0.75),
        "tusimple_accuracy": tusimple_result.accuracy,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.2f}"


def _render_sticks(job: tuple[int, int, int, int]) -> Any:
    from refine_perception.data.synthetic.sticks import sticks_scene

    return sticks_scene(*job)


def _instance_figures(truth: list[list[Any]], predictions: list[list[Any] | None]) -> dict[str, Any]:
    from refine_perception.evaluation.instances import score_instance_frames

    figures = {k: v for k, v in score_instance_frames(truth, predictions).to_dict().items() if k != "per_frame"}
    # the boundary patch refinement issue's tolerance, next to the openseg ratio's (1 px at 640x480)
    wide = score_instance_frames(truth, predictions, boundary_tolerance_px=BOUNDARY_TOLERANCE_PX)
    return {**figures, "boundary_F_3px": wide.boundary_f}


def _open_refiner(boundary_model: str | Path | None, task: str, runtime: tuple[str, str], threads: int,
                  nms_threshold: float) -> Any:
    """The boundary stage of `boundary_model` on the held-out test's runtime, or None without one."""
    if boundary_model is None:
        return None
    from refine_perception.boundaries.stage import BoundaryStage

    backend, precision = runtime
    return BoundaryStage.open(str(boundary_model), task, RuntimeConfig(backend, "cpu", precision, threads=threads),
                              nms_threshold)


class _RefinementCost:
    """The boundary stage's time per frame and per instance and its patches per frame, over a test."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, int, int]] = []  # (ms, instances, patches)

    def add(self, refiner: Any) -> None:
        self.frames.append((refiner.last.ms, refiner.last.instances, refiner.last.patches))

    def to_dict(self, model: str | Path, nms_threshold: float) -> dict[str, Any]:
        import numpy as np

        ms, instances, patches = (np.array(column, np.float64) for column in zip(*self.frames)) if self.frames \
            else (np.zeros(0),) * 3
        per_instance = ms[instances > 0] / instances[instances > 0]
        return {"model": str(model), "nms": nms_threshold, "frames": len(self.frames),
                "ms_per_frame_median": float(np.median(ms)) if ms.size else 0.0,
                "ms_per_instance_median": float(np.median(per_instance)) if per_instance.size else 0.0,
                "patches_per_frame_mean": float(patches.mean()) if patches.size else 0.0}

    def line(self, model: str | Path, nms_threshold: float) -> str:
        d = self.to_dict(model, nms_threshold)
        return (f"boundary refinement: {model} (NMS {nms_threshold}): {d['ms_per_frame_median']:.1f} ms per frame, "
                f"{d['ms_per_instance_median']:.2f} ms per instance (medians), {d['patches_per_frame_mean']:.0f} "
                f"patches per frame")


FIGURE_FRAMES = 4  # frames of the refinement comparison picture (the first where refinement changed a mask)


def _write_figure(frames: list[Any], path: str | Path) -> None:
    import cv2

    from refine_perception.boundaries.figure import comparison_figure

    picture = comparison_figure(frames)
    if picture is None:
        raise ValueError("the refiner changed no mask on these frames: no comparison to draw")
    if not cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f"could not write {path}")


def _sticks_figures(truth: list[list[Any]], predictions: list[list[Any] | None]) -> dict[str, Any]:
    """Every figure of the sticks test, over all scenes and over the crowded ones."""
    figures = _instance_figures(truth, predictions)
    crowded = [k for k, gts in enumerate(truth) if len(gts) >= CROWDED_STICKS]
    figures["crowded"] = {"min_sticks": CROWDED_STICKS, "scenes": len(crowded), **(_instance_figures(
        [truth[k] for k in crowded], [predictions[k] for k in crowded]) if crowded else {})}
    return figures


def _sticks_lines(figures: dict[str, Any]) -> list[str]:
    dense = figures["crowded"]
    return [
        f"mask AP {_pct(figures['mask_AP'])}  AP50 {_pct(figures['mask_AP50'])}  AP75 {_pct(figures['mask_AP75'])}  "
        f"boundary F {_pct(figures['boundary_F'])} ({figures['boundary_tolerance_px']} px), "
        f"{_pct(figures['boundary_F_3px'])} ({BOUNDARY_TOLERANCE_PX} px)  mIoU {_pct(figures['mIoU'])}",
        f"grasp success {_pct(figures['grasp_success_rate'])} ({figures['grasp_frames']} frames with a free stick), "
        f"confident grasps {_pct(figures['confident_grasp_success_rate'])} ({figures['confident_grasps']})",
        f"scenes with >= {CROWDED_STICKS} sticks ({dense['scenes']}): mask AP {_pct(dense.get('mask_AP'))}  "
        f"AP50 {_pct(dense.get('mask_AP50'))}  AP75 {_pct(dense.get('mask_AP75'))}  "
        f"grasp success {_pct(dense.get('grasp_success_rate'))}",
    ]


def evaluate_instances_heldout(weights: str | Path, num: int = 200, seed: int = 2, width: int = 640,
                               height: int = 480, workers: int = 2, batch_size: int = 8,
                               progress: bool = True, runtime: tuple[str, str] = ("torch", "fp32"),
                               int8_weight_bits: int = 0, boundary_model: str | Path | None = None,
                               boundary_nms: float = INFERENCE_NMS, figure: str | Path | None = None) -> dict[str, Any]:
    """Score instance weights (either formulation) on `num` rendered stick scenes of a seed no training config uses, as the
    instance segmenter sees them (camera images of `width` x `height`, the depth image, the scene's K):
    mask AP, boundary F, mIoU and grasp success against the scenes' exact ground truth, over all scenes and
    over those with at least CROWDED_STICKS sticks (where crossings are most frequent). The network runs on
    the runtime's (backend, precision) = `runtime` on the CPU (torch fp32: the reference). With a
    `boundary_model`, the same frames are also scored with the masks refined as the node refines them
    (under "refined", with the refinement's cost), and `figure` is a picture of what it changed."""
    from dataclasses import replace

    from refine_perception.boundaries.figure import RefinedFrame
    from refine_perception.instances.grasps import add_grasps
    from refine_perception.instances.predict import InstancePredictor, oriented_box
    from refine_perception.instances.sticks_truth import scene_truth

    started = time.perf_counter()
    backend, precision = runtime
    predictor, info = InstancePredictor.from_file(weights, config=RuntimeConfig(
        backend, "cpu", precision, threads=workers, int8_weight_bits=int8_weight_bits))
    refiner = _open_refiner(boundary_model, "sticks", runtime, workers, boundary_nms)
    metadata = predictor.metadata
    table_distance = 0.7  # unused where the depth image covers a stick, which it always does here
    truth: list[list[Any]] = []
    predictions: list[list[Any] | None] = []
    refined: list[list[Any] | None] = []
    cost = _RefinementCost()
    changed: list[RefinedFrame] = []
    scenes = ordered_map(_render_sticks, [(seed, i, width, height) for i in range(num)], workers, progress,
                         "sticks scenes")
    while batch := list(itertools.islice(scenes, batch_size)):
        for scene, found in zip(batch, predictor([scene.image for scene in batch])):
            truth.append(scene_truth(scene))
            predictions.append(add_grasps(found, scene.camera.K, table_distance, depth=scene.depth))
            if refiner is not None:
                masks = refiner(scene.image, [r.mask for r in found])
                cost.add(refiner)
                better = [replace(r, mask=m, box=oriented_box(m)) for r, m in zip(found, masks) if m.any()]
                frame = RefinedFrame(scene.image, [t.mask for t in truth[-1]], [r.mask for r in found], masks)
                if figure is not None and len(changed) < FIGURE_FRAMES and frame.most_changed() is not None:
                    changed.append(frame)
                refined.append(add_grasps(better, scene.camera.K, table_distance, depth=scene.depth))
    figures = _sticks_figures(truth, predictions)
    lines = [f"held-out sticks test: {num} scenes of seed {seed} at {width}x{height} (rendered)",
             f"weights: {weights} ({predictor.decoder.name} width {metadata.get('width')}, input "
             f"{metadata.get('input_height')}x{metadata.get('input_width')}) on {info}", *_sticks_lines(figures)]
    if refiner is not None:
        figures["refined"] = _sticks_figures(truth, refined)
        figures["refinement"] = cost.to_dict(str(boundary_model), boundary_nms)
        lines += ["refined masks:", *_sticks_lines(figures["refined"]), cost.line(str(boundary_model), boundary_nms)]
        if figure is not None:
            _write_figure(changed, figure)
            lines.append(f"comparison picture: {figure}")
    seconds = time.perf_counter() - started
    table = "\n".join([*lines, f"{seconds:.0f} s"])
    return {"weights": str(weights), "sha256": metadata.get("sha256"), "seed": seed, "images": num,
            "size": [width, height], "backend": str(info), **figures, "seconds": round(seconds, 1), "table": table}


def _render_street(job: tuple[int, int, int, int]) -> tuple[Any, Any]:
    import numpy as np

    from refine_perception.data.synthetic.street import render_street

    seed, index, width, height = job
    scene = render_street(np.random.SeedSequence([seed, index]), width, height)
    return scene.image, scene.instance_ids.astype(np.uint16)


def evaluate_street_heldout(weights: str | Path, num: int = 500, seed: int = 2, width: int = 1024, height: int = 512,
                            workers: int = 2, batch_size: int = 4, progress: bool = True,
                            runtime: tuple[str, str] = ("torch", "fp32"), int8_weight_bits: int = 0,
                            boundary_model: str | Path | None = None, boundary_nms: float = INFERENCE_NMS,
                            figure: str | Path | None = None) -> dict[str, Any]:
    """Score label refinement weights on `num` rendered street scenes of a seed no training config uses, at
    the generator's size `width` x `height`: mIoU and boundary F (3 px) of every stage, IoU per class at the
    finest, and the car / person instances by COCO mask AP, Cityscapes AP and the boundary F (3 px) of their
    label maps. The network runs on the runtime's (backend, precision) = `runtime` on the CPU (torch fp32:
    the reference). With a `boundary_model`, the instances are also scored refined as the node refines them
    (under "refined", with the refinement's cost), and `figure` is a picture of what it changed."""
    import numpy as np

    from refine_perception.boundaries.figure import RefinedFrame
    from refine_perception.data.formats.cityscapes import instances_of
    from refine_perception.evaluation.instances import instance_label_maps
    from refine_perception.metrics.boundary import SemanticBoundaryF, boundary_f_score
    from refine_perception.metrics.cityscapes_ap import cityscapes_ap
    from refine_perception.metrics.coco_ap import coco_mask_ap
    from refine_perception.metrics.instances import GtInstance, PredInstance, to_rle
    from refine_perception.metrics.semantic import SemanticConfusion
    from refine_perception.models.lrn.network import STAGE_STRIDES
    from refine_perception.segmentation.classes import IGNORE_LABEL
    from refine_perception.segmentation.predict import StreetPredictor
    from refine_perception.training.street_data import StreetTargets

    started = time.perf_counter()
    backend, precision = runtime
    predictor, info = StreetPredictor.from_file(weights, RuntimeConfig(backend, "cpu", precision, threads=workers,
                                                                       int8_weight_bits=int8_weight_bits))
    refiner = _open_refiner(boundary_model, "street", runtime, workers, boundary_nms)
    names, meta = predictor.class_names, predictor.metadata
    targets = StreetTargets(names, meta["instance_classes"])
    instance_ids = {predictor.label_ids[k] for k in predictor.instance_classes}
    confusions = [SemanticConfusion(len(names), IGNORE_LABEL, names) for _ in STAGE_STRIDES]
    boundaries = [SemanticBoundaryF(len(names), BOUNDARY_TOLERANCE_PX, IGNORE_LABEL, names) for _ in STAGE_STRIDES]
    truth_maps: list[np.ndarray] = []
    truth: list[list[GtInstance]] = []
    variants: dict[str, tuple[list[list[PredInstance]], list[float]]] = {"unrefined": ([], [])}
    if refiner is not None:
        variants["refined"] = ([], [])
    cost = _RefinementCost()
    changed: list[RefinedFrame] = []
    scenes = ordered_map(_render_street, [(seed, i, width, height) for i in range(num)], workers, progress,
                         "street scenes")
    while batch := list(itertools.islice(scenes, batch_size)):
        for (image, ids), result in zip(batch, predictor([image for image, _ in batch])):
            labels, _ = targets(ids)
            for confusion, boundary, predicted in zip(confusions, boundaries, result.stage_labels):
                confusion.update(predicted, labels)
                boundary.update(predicted, labels)
            truth_maps.append(ids)
            objects = instances_of(ids, instance_ids)
            truth.append([GtInstance(instance.class_id, to_rle(instance.mask, "ground truth")) for instance in objects])
            gt_masks = np.array([instance.mask for instance in objects], bool).reshape(-1, height, width)
            masks = [p.mask for p in result.instances]
            for variant, (predictions, frame_f) in variants.items():
                if variant == "refined":
                    frame = RefinedFrame(image, [instance.mask for instance in objects], masks, refiner(image, masks))
                    masks = frame.refined
                    cost.add(refiner)
                    if figure is not None and len(changed) < FIGURE_FRAMES and frame.most_changed() is not None:
                        changed.append(frame)
                kept = [(p, mask) for p, mask in zip(result.instances, masks) if mask.any()]  # as the node keeps them
                predictions.append([PredInstance(p.class_id, to_rle(mask, "prediction"), p.score) for p, mask in kept])
                scores = np.array([p.score for p, _ in kept], np.float64)
                pred_masks = np.array([mask for _, mask in kept], bool).reshape(-1, height, width)
                frame_f.append(boundary_f_score(*reversed(instance_label_maps(gt_masks, pred_masks, scores)),
                                                BOUNDARY_TOLERANCE_PX).f)
    stages = [{"stride": stride, "mIoU": c.miou(), "boundary_F": b.mean()}
              for stride, c, b in zip(STAGE_STRIDES, confusions, boundaries)]
    label_names = {predictor.label_ids[k]: names[k] for k in predictor.instance_classes}
    finest = confusions[-1]
    rows = [["stage", "mIoU", f"boundary F@{BOUNDARY_TOLERANCE_PX}px"]]
    rows += [[f"1/{s['stride']}", _pct(s["mIoU"]), _pct(s["boundary_F"])] for s in stages]
    lines = [f"held-out street test: {num} scenes of seed {seed} at {width}x{height} (rendered)",
             f"weights: {weights} (ResNet-18 width {meta.get('width')}, input {meta.get('input_height')}x"
             f"{meta.get('input_width')}) on {info}", format_table(rows), finest.table()]
    scored: dict[str, Any] = {}
    for variant, (predictions, frame_f) in variants.items():
        coco = coco_mask_ap(truth, predictions, label_names)
        city = cityscapes_ap(truth_maps, predictions)
        boundary_f = float(np.mean(frame_f))
        scored[variant] = {"coco_mask_ap": coco.to_dict(), "cityscapes_ap": city.to_dict(),
                           "instance_boundary_F": boundary_f}
        instance_rows = [["class", "COCO AP", "COCO AP50", "Cityscapes AP", "Cityscapes AP50"]]
        for name in ["all", *label_names.values()]:
            c = coco.summary if name == "all" else coco.per_class.get(name, {})
            k = city.summary if name == "all" else city.per_class.get(name, {})
            instance_rows.append([name, _pct(c.get("AP")), _pct(c.get("AP50")), _pct(k.get("AP")),
                                  _pct(k.get("AP50"))])
        lines += [f"{variant} instances: boundary F@{BOUNDARY_TOLERANCE_PX}px of their label maps {_pct(boundary_f)}",
                  format_table(instance_rows)]
    report: dict[str, Any] = {"weights": str(weights), "sha256": meta.get("sha256"), "seed": seed, "images": num,
                              "size": [width, height], "backend": str(info), "stages": stages,
                              "semantic": finest.to_dict(), **scored["unrefined"]}
    if refiner is not None:
        report["refined"] = scored["refined"]
        report["refinement"] = cost.to_dict(str(boundary_model), boundary_nms)
        lines.append(cost.line(str(boundary_model), boundary_nms))
        if figure is not None:
            _write_figure(changed, figure)
            lines.append(f"comparison picture: {figure}")
    seconds = time.perf_counter() - started
    lines.append(f"{seconds:.0f} s")
    return {**report, "seconds": round(seconds, 1), "table": "\n".join(lines)}
