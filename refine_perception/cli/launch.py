"""`refine-perception launch` (any graph, in one process) and `refine-perception demo` (the main job)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refine_perception.cli import CliError
from refine_perception.graphs import GRAPHS, GraphError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="run a node graph in one process (what `ros2 launch refine_perception <graph>.launch.py` starts)",
        description="Runs the nodes of a graph in this process, each on its own single-threaded executor thread, "
        "with the same params files and arguments as launch/<graph>.launch.py. Stop with Ctrl-C.",
    )
    p.add_argument("graph", nargs="?", help=f"one of: {', '.join(GRAPHS)}")
    p.add_argument("arguments", nargs="*", metavar="name:=value", help="launch arguments, as for ros2 launch")
    p.add_argument("--show-args", action="store_true", help="list the graph's arguments and exit")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="print the final figures of every node as JSON")
    p.set_defaults(func=run_launch)

    d = sub.add_parser(
        "demo",
        help="the main job: lane detection on the embedded synthetic drive, scored live (or the sticks instances)",
        description="lanes (the default): runs the lanes graph (camera_source -> lane_detector -> lane_scorer) on "
        "the embedded synthetic drive with the shipped model, prints the lanes, F1 against the drive's exact "
        "ground truth, FPS and latency, and writes a PNG strip of annotated frames; --source plays your own "
        "video or images instead (no ground truth, so no score). sticks: runs the sticks graph (camera_source "
        "-> instance_segmenter) on synthetic pick-and-place scenes with depth, prints FPS, latency, instances "
        "and grasps, mask AP and grasp success against the scenes' exact ground truth, and writes a PNG strip.",
    )
    d.add_argument("task", nargs="?", choices=("lanes", "sticks"), default="lanes", help="what to demo (default lanes)")
    d.add_argument("--frames", type=int, help="frames to send through the graph (default 50 lanes, 20 sticks)")
    d.add_argument("--source", default="", help="lanes: a video file, image folder or glob instead of the synthetic "
                   "drive; sticks: other scenes, synthetic:sticks?seed=2&frames=20&width=640&height=480")
    d.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz, 0 = lock-step (default 10)")
    d.add_argument("--strip", default="", help="PNG strip of annotated frames (default demo_<task>.png)")
    d.add_argument("--model", default="", help="model file of the detector or segmenter (default: the shipped one)")
    d.add_argument("--json", action="store_true", help="print the figures as JSON")
    d.set_defaults(func=run_demo)


def parse_assignments(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise CliError(f"expected name:=value, got {item!r}")
        values[name] = value
    return values


def run_launch(args: argparse.Namespace) -> int:
    if not args.graph or args.show_args:
        return _describe(args.graph)
    from refine_perception.ros.graph_runner import NodeStartError, run_graph

    try:
        nodes = run_graph(args.graph, parse_assignments(args.arguments), duration_s=args.duration)
    except (GraphError, NodeStartError) as error:
        raise CliError(str(error)) from None
    figures = final_figures(nodes)
    print(json.dumps(figures, indent=2) if args.json else format_figures(figures))
    return 0


def _describe(graph_name: str | None) -> int:
    if graph_name is None:
        for graph in GRAPHS.values():
            print(f"{graph.name:12s} {graph.description}")
        return 0
    if graph_name not in GRAPHS:
        raise CliError(f"unknown graph {graph_name!r}; available: {', '.join(GRAPHS)}")
    graph = GRAPHS[graph_name]
    print(f"{graph.name}: {graph.description}\nnodes: {', '.join(n.name for n in graph.nodes)}\narguments:")
    for arg in graph.all_args:
        choices = f" (one of {', '.join(c for c in arg.choices if c)})" if arg.choices else ""
        print(f"  {arg.name}:={arg.default!s:8s} {arg.description}{choices}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    frames = args.frames or {"lanes": 50, "sticks": 20}[args.task]
    strip = args.strip or f"demo_{args.task}.png"
    bar = tqdm(total=frames, unit="frame", desc="demo", disable=args.json, leave=False)
    started = time.monotonic()
    try:
        demo = _sticks_demo if args.task == "sticks" else _lanes_demo
        figures = demo(args, frames, strip, bar)
    finally:
        bar.close()
    figures["wall_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(figures, indent=2) if args.json else format_figures(figures))
    return 0


def _lanes_demo(args: argparse.Namespace, frames: int, strip: str, bar: Any) -> dict[str, Any]:
    import tempfile

    from refine_perception.bags.lane_bags import drive_mount_params
    from refine_perception.core.frame_sources import DEFAULT_SOURCE
    from refine_perception.ros.graph_runner import NodeStartError, run_graph

    synthetic = not args.source
    source = args.source or DEFAULT_SOURCE
    values = {"source": source, "max_frames": str(frames), "rate_hz": str(args.rate), "score": str(synthetic).lower()}

    def caught_up(nodes: list[Any]) -> bool:
        camera, detector = nodes[0], nodes[1]
        handled = detector.counters.processed + detector.counters.dropped_total
        scored = nodes[2].counters.processed if synthetic else handled
        return min(handled, scored) >= camera.published

    # the detector gets the synthetic drive's camera mounting (what a robot's TF would give), the scorer
    # the strip path; everything else as in config/
    detector = _model_param(args.model) | (drive_mount_params(source) if synthetic else {})
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        if detector:
            values |= _params_file(Path(folder), "lane_detector", "lanes.yaml", detector)
        if synthetic:
            values |= _params_file(Path(folder), "lane_scorer", "lane_scorer.yaml",
                                   {"strip_path": str(Path(strip).resolve())})
        try:
            nodes = run_graph("lanes", values, until=_demo_until(bar, 0, caught_up))
        except (GraphError, NodeStartError) as error:
            raise CliError(str(error)) from None
    figures = final_figures(nodes)
    processed = figures.get("lane_detector", {}).get("processed", 0)
    figures["detector_fps"] = round(processed / max(time.monotonic() - started, 1e-9), 2)
    return figures


def _sticks_demo(args: argparse.Namespace, frames: int, strip: str, bar: Any) -> dict[str, Any]:
    """The sticks graph with a listener node beside it (created first, so it hears every frame): the
    camera's CameraInfo stamps give each InstanceArray its scene, which is rendered again afterwards for
    its ground truth and the strip (keeping the truth in the camera would cost it ~2.6 MB a frame)."""
    import tempfile

    from refine_perception.core.frame_sources import STICKS_SOURCE, SourceError, SyntheticSticksSource
    from refine_perception.graphs import plan
    from refine_perception.ros.graph_runner import NodeStartError, node_class, run_nodes
    from refine_perception.share import config_dir

    source = args.source or f"{STICKS_SOURCE}?frames={frames}"
    if source.split("?")[0] != STICKS_SOURCE:
        raise CliError(f"demo sticks plays {STICKS_SOURCE}?... scenes (their ground truth scores the output), not "
                       f"{source!r}; `refine-perception launch sticks source:=...` runs the graph on any source")
    try:
        options = SyntheticSticksSource(source).options
    except SourceError as error:
        raise CliError(str(error)) from None
    values = {"source": source, "max_frames": str(frames), "rate_hz": str(args.rate)}

    def caught_up(nodes: list[Any]) -> bool:
        listener, camera, segmenter = nodes
        handled = segmenter.counters.processed + segmenter.counters.dropped_total
        return (handled >= camera.published and len(listener.frames) >= camera.published
                and len(listener.arrays) >= segmenter.arrays_published)

    with tempfile.TemporaryDirectory() as folder:
        if args.model:
            values |= _params_file(Path(folder), "instance_segmenter", "instances.yaml", _model_param(args.model))
        try:
            graph = [(node_class(p.executable), p.ros_args()) for p in plan("sticks", values, config_dir())]
            nodes = run_nodes([(_instance_listener(), []), *graph], args=[], until=_demo_until(bar, 1, caught_up))
        except (GraphError, NodeStartError) as error:
            raise CliError(str(error)) from None
    listener, camera, _ = nodes
    return {**final_figures(nodes[1:]), "sticks": _sticks_figures(listener, camera.published, options, strip)}


def _model_param(model: str) -> dict[str, str]:
    return {"model": str(Path(model).resolve())} if model else {}


def _params_file(folder: Path, node: str, params_file: str, updates: dict[str, Any]) -> dict[str, str]:
    """The launch argument `<node>_params_file` naming a copy of config/<params_file> with `updates` over
    the node's parameters."""
    import yaml

    from refine_perception.share import config_dir

    doc = yaml.safe_load((config_dir() / params_file).read_text())
    doc[f"/**/{node}"]["ros__parameters"].update(updates)
    path = folder / f"{node}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return {f"{node}_params_file": str(path)}


def _demo_until(bar: Any, camera_at: int, caught_up: Callable[[list[Any]], bool]) -> Callable[[list[Any]], bool]:
    """run_nodes' `until` for a demo: true once nodes[camera_at], the camera, has sent its frames and
    `caught_up(nodes)` says the others are done with them, or 5 s after the camera finished (what a node
    lost stays lost); the progress bar follows the camera."""
    finished_at: list[float] = []

    def done(nodes: list[Any]) -> bool:
        camera = nodes[camera_at]
        bar.update(camera.published - bar.n)
        if not camera.finished.is_set():
            return False
        if not finished_at:
            finished_at.append(time.monotonic())
        return caught_up(nodes) or time.monotonic() - finished_at[0] > 5.0

    return done


def _instance_listener() -> type:
    """The node class of the sticks demo's listener, made on first use (the command line imports rclpy only
    to run nodes). It keeps the stamps of the camera's CameraInfo in order (the k-th is frame k) and every
    InstanceArray with its stamp and arrival time."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo

    from refine_msgs.msg import InstanceArray
    from refine_perception.graphs import CAMERA_INFO_TOPIC
    from refine_perception.ros.node_base import PerceptionNode

    def stamp(msg: Any) -> tuple[int, int]:
        return msg.header.stamp.sec, msg.header.stamp.nanosec

    class InstanceListener(PerceptionNode):
        TASK = "demo listener"
        DEFAULT_NAME = "demo_listener"

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(self.DEFAULT_NAME, **kwargs)
            qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
            self.frames: list[tuple[int, int]] = []
            self.arrays: list[tuple[tuple[int, int], InstanceArray, float]] = []
            self.create_subscription(CameraInfo, CAMERA_INFO_TOPIC.default, lambda m: self.frames.append(stamp(m)), qos)
            self.create_subscription(InstanceArray, "instances",
                                     lambda m: self.arrays.append((stamp(m), m, time.monotonic())), qos)

    return InstanceListener


def _sticks_figures(listener: Any, published: int, options: dict[str, Any], strip: str) -> dict[str, Any]:
    """Output rate, instances and grasps of the InstanceArrays the listener heard, then their scores and strip."""
    import numpy as np

    from refine_perception.ros.instance_messages import instance_results

    arrays = listener.arrays
    figures: dict[str, Any] = {"frames": published, "instance_arrays": len(arrays)}
    if not arrays:
        return figures
    span = arrays[-1][2] - arrays[0][2]
    figures["fps"] = round((len(arrays) - 1) / span, 2) if span > 0 else None
    figures["instances_per_frame"] = round(float(np.mean([len(a.instances) for _, a, _ in arrays])), 2)
    figures["grasps"] = sum(i.has_grasp for _, a, _ in arrays for i in a.instances)
    if len(listener.frames) != published:  # an unheard frame would shift every later one onto another scene
        figures["not_scored"] = f"the listener heard {len(listener.frames)} of {published} frames"
        return figures
    scene_of = {stamp: k % int(options["frames"]) for k, stamp in enumerate(listener.frames)}
    return figures | _score_sticks([(scene_of[stamp], instance_results(a)) for stamp, a, _ in arrays], options, strip)


def _score_sticks(outputs: list[tuple[int, list[Any]]], options: dict[str, Any], strip: str,
                  strip_frames: int = 6) -> dict[str, Any]:
    """Mask AP and grasp success of each frame's results (scene index, InstanceResults) against its scene's
    ground truth, and a strip of `strip_frames` of them spread over the run."""
    import cv2
    import numpy as np

    from refine_perception.data.preview import grid
    from refine_perception.data.synthetic.sticks import sticks_scenes
    from refine_perception.evaluation.instances import score_instance_frames
    from refine_perception.instances.sticks_truth import scene_truth
    from refine_perception.ros.instance_messages import draw_instances

    shown = [outputs[k] for k in sorted({int(k) for k in np.linspace(0, len(outputs) - 1, strip_frames).round()})]
    needed, drawn = {index for index, _ in outputs}, {index for index, _ in shown}
    truth: dict[int, list[Any]] = {}
    views: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    o = options
    for index, scene in enumerate(sticks_scenes(int(o["seed"]), max(needed) + 1, int(o["width"]), int(o["height"]))):
        if index in needed:
            truth[index] = scene_truth(scene)
        if index in drawn:
            views[index] = scene.image, scene.camera.K
    scores = score_instance_frames([truth[index] for index, _ in outputs], [results for _, results in outputs])
    path = Path(strip)
    path.parent.mkdir(parents=True, exist_ok=True)
    tiles = [draw_instances(views[index][0], results, views[index][1]) for index, results in shown]
    if not cv2.imwrite(str(path), grid(tiles, cols=2, tile_width=480)):
        raise CliError(f"cannot write {path}")
    summary = scores.mask_ap.summary
    return {"frames_scored": len(outputs), "mask_AP": round(float(summary["AP"]), 4),
            "mask_AP50": round(float(summary["AP50"]), 4), "grasp_success_rate": scores.grasp_success_rate,
            "grasp_frames": scores.grasp_frames, "strip": str(path.resolve())}


def final_figures(nodes: list[Any]) -> dict[str, Any]:
    """Counters, latencies and node-specific figures of every node after the run, by node name."""
    figures: dict[str, Any] = {}
    for node in nodes:
        entry: dict[str, Any] = {"status": node.status_summary()[1], **node.counters.as_dict()}
        latency = node.latency.summary_ms()
        if latency:
            entry["latency_ms"] = {k: round(v, 2) for k, v in latency.items()}
        entry.update(node.report())
        figures[node.node_name] = entry
    return figures


def format_figures(figures: dict[str, Any]) -> str:
    lines = []
    for name, entry in figures.items():
        if not isinstance(entry, dict):
            lines.append(f"{name}: {entry}")
            continue
        if "instance_arrays" in entry:
            text = _sticks_text(entry)
        elif "published" in entry:
            text = f"published {entry['published']} frames of {entry['source']}"
        elif entry["received"]:
            text = f"received {entry['received']}, processed {entry['processed']}, dropped {entry['dropped']}"
            drops = [f"{k.removeprefix('dropped_')} {v}" for k, v in entry.items() if k.startswith("dropped_")]
            text += f" ({', '.join(drops)})" if drops else ""
        else:
            text = "no frames"
        latency = entry.get("latency_ms")
        if latency:
            text += f"; latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, max {latency['max']:.1f} ms"
        if entry.get("backend"):
            text += f"; on {entry['backend']}"
        if entry.get("model_error"):
            text += f"; {entry['model_error']}"
        if "F1@50" in entry:
            accuracy = entry["type_accuracy"]
            text += (f"; {entry['frames_scored']} frames scored: F1@50 {entry['F1@50']:.4f}, F1@75 {entry['F1@75']:.4f}, "
                     f"lane type accuracy {'-' if accuracy is None else f'{accuracy:.4f}'}, "
                     f"{entry['id_switches']} id switches")
        if entry.get("strip"):
            text += f"; strip written to {entry['strip']}"
        lines.append(f"{name}: {text}" if "topics" not in entry else f"{name}:")
        for topic, stats in entry.get("topics", {}).items():
            age = stats.get("age_ms", {})
            age_text = f", age p50 {age['p50']:.1f} ms" if age else ""
            lines.append(
                f"    {topic:36s} {stats['messages']:6d} msgs {stats['rate_hz']:7.2f} Hz "
                f"{stats['mb_per_s']:7.3f} MB/s{age_text}"
            )
    return "\n".join(lines)


def _sticks_text(entry: dict[str, Any]) -> str:
    text = f"{entry['instance_arrays']} instance arrays for {entry['frames']} frames"
    if not entry["instance_arrays"]:
        return text
    fps = "-" if entry["fps"] is None else f"{entry['fps']:.1f}"
    text += (f" at {fps} FPS, {entry['instances_per_frame']:.1f} instances per frame, "
             f"{entry['grasps']} grasps")
    if "not_scored" in entry:
        return f"{text}; not scored: {entry['not_scored']}"
    success = entry["grasp_success_rate"]
    return (f"{text}; {entry['frames_scored']} frames scored: mask AP {entry['mask_AP']:.4f}, AP50 "
            f"{entry['mask_AP50']:.4f}, grasp success {'-' if success is None else f'{success:.4f}'} "
            f"({entry['grasp_frames']} frames with a free stick)")
