"""The replay report: report.md with the figures as tables, PNG plots (lanes: precision/recall against the
score threshold and F1 per category; every task: latency histogram and over time) and a strip of the
worst frames with the ground truth (thin white) under the node's output (lanes coloured by type, object
masks tinted with their rotated boxes and grasps, street label maps in Cityscapes colours with the true
class edges), and the bad frames (camera image unreadable: scored as frames without output) with the
reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from refine_perception.bags.frames import cdr_stamp  # noqa: E402
from refine_perception.bags.reader import BagReader  # noqa: E402
from refine_perception.data.formats.cityscapes import colorize  # noqa: E402
from refine_perception.data.preview import grid  # noqa: E402
from refine_perception.evaluation.lanes import image_points  # noqa: E402
from refine_perception.evaluation.replay import ReplayEvaluation, stamp_label  # noqa: E402
from refine_perception.metrics.boundary import label_boundaries  # noqa: E402
from refine_perception.ros.image_messages import image_to_numpy, to_bgr  # noqa: E402
from refine_perception.ros.instance_messages import draw_instances, instance_results  # noqa: E402
from refine_perception.ros.lane_messages import draw_overlay  # noqa: E402

WORST_FRAMES = 6


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def _plot_pr(evaluation: ReplayEvaluation, path: Path) -> None:
    curve = np.array(evaluation.scores.pr_curve)
    f1 = np.divide(2 * curve[:, 1] * curve[:, 2], curve[:, 1] + curve[:, 2], out=np.zeros(len(curve)),
                   where=curve[:, 1] + curve[:, 2] > 0)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve[:, 0], curve[:, 1], "o-", label="precision")
    ax.plot(curve[:, 0], curve[:, 2], "s-", label="recall")
    ax.plot(curve[:, 0], f1, "^-", label="F1")
    ax.set(xlabel="lane score threshold", ylabel="at IoU 0.5", ylim=(0, 1.02),
           title="Precision / recall vs threshold (from the node's own threshold up)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_latency(evaluation: ReplayEvaluation, path: Path) -> None:
    stamps = [s for s in evaluation.stamps if s in evaluation.latency_ms]
    values = np.array([evaluation.latency_ms[s] for s in stamps])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.hist(values, bins=min(40, max(5, len(values) // 3)), color="#0072B2")
    left.set(xlabel="latency (ms): image sent -> result received", ylabel="frames", title="Latency histogram")
    right.plot(np.arange(len(values)), values, ".-", color="#D55E00", markersize=3)
    right.set(xlabel="frame", ylabel="latency (ms)", title="Latency over the run")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_categories(evaluation: ReplayEvaluation, path: Path) -> None:
    culane = evaluation.scores.culane
    names = ["all", *evaluation.scores.categories()]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names)), 3.6))
    ax.bar(x - 0.2, [culane.f1(0.5, n) for n in names], 0.4, label="F1@50", color="#009E73")
    ax.bar(x + 0.2, [culane.f1(0.75, n) for n in names], 0.4, label="F1@75", color="#56B4E9")
    ax.set_xticks(x, names)
    ax.set(ylim=(0, 1.02), ylabel="F1", title="CULane F1 per category")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw_lanes(image: np.ndarray, truth: Any, output: Any) -> np.ndarray:
    lanes = [np.round(image_points(lane) * 16).astype(np.int32) for lane in truth.lanes]
    cv2.polylines(image, lanes, False, (255, 255, 255), 1, cv2.LINE_AA, shift=4)
    return image if output is None else draw_overlay(image, output)


def _draw_instances(image: np.ndarray, truth: Any, output: Any) -> np.ndarray:
    if output is not None:
        image = draw_instances(image, instance_results(output))
    for result in instance_results(truth):
        contours, _ = cv2.findContours(result.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(image, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def _draw_street(image: np.ndarray, truth: np.ndarray, output: Any) -> np.ndarray:
    if output is not None:
        image = cv2.addWeighted(image, 0.5, colorize(image_to_numpy(output, "mono8")), 0.5, 0)
    image[label_boundaries(truth)] = 255
    return image


def _worst_frames(evaluation: ReplayEvaluation, path: Path, count: int = WORST_FRAMES) -> list[int]:
    unreadable = {frame.index for frame in evaluation.bad_frames}  # listed on their own, nothing to draw
    ranked = sorted((f for f in evaluation.scores.per_frame if f.index not in unreadable),
                    key=lambda f: (-f.errors, f.index))[:count]
    wanted = {evaluation.stamps[f.index]: f for f in ranked if f.errors > 0}
    if not wanted:
        return []
    draw = {"lanes": _draw_lanes, "instances": _draw_instances, "street": _draw_street}[evaluation.task]
    tiles: dict[int, np.ndarray] = {}
    for message in BagReader(evaluation.bag.path).messages({evaluation.bag.image_topic}):
        stamp = cdr_stamp(message.data)
        if stamp not in wanted:
            continue
        output = evaluation.outputs.get(stamp)
        image = draw(np.array(to_bgr(message.decode())), evaluation.bag.truth[stamp], output)
        frame = wanted[stamp]
        label = f"frame {frame.index}: {frame.fp} FP, {frame.fn} FN"
        if hasattr(frame, "pixel_error"):
            label += f", {100 * frame.pixel_error:.1f}% pixels wrong"
        if getattr(frame, "grasp_success", None) is False:
            label += ", grasp missed"
        label += "" if output is not None else " (dropped)"
        scale = image.shape[1] / 1280
        cv2.putText(image, label, (12, round(36 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 255),
                    max(1, round(2 * scale)), cv2.LINE_AA)
        tiles[frame.index] = image
    order = sorted(tiles)
    if order and not cv2.imwrite(str(path), grid([tiles[k] for k in order], cols=2, tile_width=480)):
        raise OSError(f"cannot write {path}")
    return order


def _lane_accuracy(evaluation: ReplayEvaluation, folder: Path) -> list[str]:
    s = evaluation.scores
    tusimple = s.tusimple
    lines = [_table([["metric", "value"],
                     ["CULane F1@50", _pct(s.culane.f1(0.5))], ["CULane F1@75", _pct(s.culane.f1(0.75))],
                     ["CULane mF1 (0.50:0.95)", _pct(s.culane.mf1())],
                     ["TuSimple accuracy", f"{_pct(tusimple.accuracy)} ({tusimple.images} frames with lanes)"],
                     ["TuSimple FP", _pct(tusimple.fp)],
                     ["TuSimple FN", _pct(tusimple.fn)],
                     ["lanes on frames without lanes", f"{s.tusimple_laneless.get('false_lanes', 0)} on "
                                                       f"{s.tusimple_laneless.get('images', 0)} frames"],
                     ["lane type accuracy", f"{_pct(s.type_accuracy)} ({s.attributes.type_total} matched lanes)"],
                     ["lane colour accuracy", f"{_pct(s.color_accuracy)} ({s.attributes.color_total})"],
                     ["tracking id switches", str(s.id_switches)]]), ""]
    if s.categories():
        rows = [["category", "frames", "F1@50", "F1@75", "mF1"]]
        rows += [[name, str(s.culane.images[name]), _pct(s.culane.f1(0.5, name)), _pct(s.culane.f1(0.75, name)),
                  _pct(s.culane.mf1(name))] for name in ["all", *s.categories()]]
        lines += ["### Per category", "", _table(rows), "", "![F1 per category](per_category_f1.png)", ""]
        _plot_categories(evaluation, folder / "per_category_f1.png")
    _plot_pr(evaluation, folder / "precision_recall.png")
    return lines + ["### Precision and recall against the score threshold", "",
                    "![precision/recall](precision_recall.png)", ""]


def _instance_accuracy(evaluation: ReplayEvaluation, folder: Path) -> list[str]:
    f = evaluation.scores.to_dict()
    grasps = f["grasp_success_rate"]
    confident = f["confident_grasp_success_rate"]
    return [_table([["metric", "value"],
                    ["mask AP (COCO, IoU 0.50:0.95)", _pct(f["mask_AP"])], ["mask AP50", _pct(f["mask_AP50"])],
                    ["mask AP75", _pct(f["mask_AP75"])],
                    ["boundary F", f"{_pct(f['boundary_F'])} (tolerance {f['boundary_tolerance_px']} px)"],
                    ["mIoU (table, stick)", _pct(f["mIoU"])],
                    ["grasp success (best grasp per frame on a free stick's axis)",
                     f"{_pct(grasps)} ({f['grasp_frames']} frames with a free stick)"],
                    ["grasp success (all grasps scoring >= threshold)",
                     f"{_pct(confident)} ({f['confident_grasps']} grasps)"]]),
            "", f"Instances and grasps scoring below {f['score_threshold']} do not count for boundary F, mIoU and "
            "the confident grasps; mask AP ranks all of them by score.", ""]


def _street_accuracy(evaluation: ReplayEvaluation, folder: Path) -> list[str]:
    f = evaluation.scores.to_dict()
    rows = [["class", "IoU"], *([name, _pct(iou)] for name, iou in f["IoU"].items()), ["mIoU", _pct(f["mIoU"])]]
    instances = [["class", "COCO mask AP", "AP50", "Cityscapes AP", "AP50"]]
    coco, city = f["coco_mask_ap"]["per_class"], f["cityscapes_ap"]["per_class"]
    for name in ("person", "car"):
        c, k = coco.get(name, {}), city.get(name, {})
        instances.append([name, _pct(c.get("AP")), _pct(c.get("AP50")), _pct(k.get("AP")), _pct(k.get("AP50"))])
    return [_table(rows), "", f"Boundary F of the label images: {_pct(f['boundary_F'])} (tolerance "
            f"{f['boundary_tolerance_px']} px, mean over the classes).", "", "### Instances", "", _table(instances), ""]


def write_report(evaluation: ReplayEvaluation, out: str | Path, title: str = "") -> Path:
    """Write report.md, figures.json and the PNGs into `out`; returns the report's path."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    figures = evaluation.to_dict()
    (folder / "figures.json").write_text(json.dumps(figures, indent=2))
    s = evaluation.scores
    kind = {"lanes": "Lane", "instances": "Instance", "street": "Street"}[evaluation.task]
    missed = {"lanes": "lanes", "instances": "objects", "street": "pixels and objects"}[evaluation.task]
    lines = [f"# {title or kind + ' replay evaluation'}", "",
             f"Bag `{Path(evaluation.bag.path).name}`, camera `{evaluation.bag.image_topic}`, mode **{evaluation.mode}**: "
             f"{len(evaluation.bag.stamps)} frames, {len(evaluation.stamps)} with ground truth scored, "
             f"{len(evaluation.outputs)} outputs, {s.frames_without_output} frames without output (counted as "
             f"missed {missed}"
             + (f"; {len(evaluation.bad_frames)} of them bad frames, see below" if evaluation.bad_frames else "")
             + ").", "", "## Accuracy", ""]
    accuracy = {"lanes": _lane_accuracy, "instances": _instance_accuracy, "street": _street_accuracy}[evaluation.task]
    lines += accuracy(evaluation, folder)
    lines += ["## Timing", ""]
    latency = evaluation.timing_summary()
    if latency:
        _plot_latency(evaluation, folder / "latency.png")
        fps = evaluation.throughput_fps
        lines += [_table([["latency mean", "p50", "p95", "max", "throughput", "dropped"],
                          [f"{latency['mean']:.1f} ms", f"{latency['p50']:.1f} ms", f"{latency['p95']:.1f} ms",
                           f"{latency['max']:.1f} ms", "-" if fps is None else f"{fps:.2f} FPS",
                           str(s.frames_without_output)]]),
                  "", "Latency is the wall time from the player sending a frame to the node's output for that frame "
                  "arriving (offline: the pipeline's time per frame).", "", "![latency](latency.png)", ""]
    else:
        lines += ["No timing: the results came without the player's timing.json (e.g. `ros2 bag record`).", ""]
    worst = _worst_frames(evaluation, folder / "worst_frames.png")
    if worst:
        drawn = {"lanes": "the detector's lanes coloured by type",
                 "instances": "the segmenter's masks tinted, with rotated boxes",
                 "street": "the label map in Cityscapes colours, the true class edges"}[evaluation.task]
        lines += ["## Worst frames", "", f"Frames {', '.join(map(str, worst))}: ground truth in thin white, {drawn}.",
                  "", "![worst frames](worst_frames.png)", ""]
    if evaluation.bad_frames:
        lines += ["## Bad frames", "", "Their camera image cannot be read, so the node drops them; each is scored as a "
                  "frame without output.", "",
                  *[f"- frame {frame.index}, stamp {stamp_label(frame.stamp)}: {frame.reason}"
                    for frame in evaluation.bad_frames], ""]
    if evaluation.errors:
        lines += ["## Read errors", "", *[f"- {error}" for error in evaluation.errors], ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


def summary_lines(figures: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    latency = figures["latency_ms"]
    head = f"{figures['frames_scored']} frames scored ({figures['mode']}), {figures['dropped']} without output: "
    if figures["task"] == "lanes":
        head += (f"F1@50 {100 * figures['F1@50']:.2f}  F1@75 {100 * figures['F1@75']:.2f}  mF1 {100 * figures['mF1']:.2f}  "
                 f"TuSimple acc {100 * figures['tusimple']['Accuracy']:.2f}  "
                 f"type acc {_pct(figures['type_accuracy'])}  id switches {figures['id_switches']}")
    elif figures["task"] == "street":
        coco = figures["coco_mask_ap"]["per_class"]
        head += (f"mIoU {_pct(figures['mIoU'])}  boundary F {_pct(figures['boundary_F'])}  "
                 + "  ".join(f"{name} AP50 {_pct(coco.get(name, {}).get('AP50'))}" for name in ("car", "person")))
    else:
        head += (f"mask AP {_pct(figures['mask_AP'])}  AP50 {_pct(figures['mask_AP50'])}  "
                 f"boundary F {_pct(figures['boundary_F'])}  mIoU {_pct(figures['mIoU'])}  "
                 f"grasp success {_pct(figures['grasp_success_rate'])}")
    lines = [head]
    if latency:
        lines.append(f"latency p50 {latency['p50']:.1f} ms  p95 {latency['p95']:.1f} ms  max {latency['max']:.1f} ms"
                     + (f"  throughput {figures['throughput_fps']:.2f} FPS" if figures["throughput_fps"] else ""))
    lines += [f"bad frame {stamp_label((frame['sec'], frame['nanosec']))} (frame {frame['index']}, scored without "
              f"output): {frame['reason']}" for frame in figures["bad_frames"]]
    lines += [f"read error: {error}" for error in figures["errors"]]
    return lines
