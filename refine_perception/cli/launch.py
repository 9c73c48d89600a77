"""`refine-perception launch` (any graph, in one process) and `refine-perception demo` (the main job)."""

from __future__ import annotations

import argparse
import json
import time
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
        help="the main job: lane detection on the embedded synthetic drive, scored live",
        description="Runs the lanes graph (camera_source -> lane_detector -> lane_scorer) on the embedded "
        "synthetic drive with the shipped model, prints the lanes, F1 against the drive's exact ground "
        "truth, FPS and latency, and writes a PNG strip of annotated frames. --source plays your own video "
        "or images instead (no ground truth, so no score).",
    )
    d.add_argument("--frames", type=int, default=50, help="frames to send through the graph (default 50)")
    d.add_argument("--source", default="", help="video file, image folder or glob instead of the synthetic drive")
    d.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz, 0 = lock-step (default 10)")
    d.add_argument("--strip", default="demo_lanes.png", help="PNG strip of annotated frames (default demo_lanes.png)")
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
    import tempfile

    from tqdm import tqdm

    from refine_perception.core.frame_sources import DEFAULT_SOURCE
    from refine_perception.ros.graph_runner import NodeStartError, run_graph
    from refine_perception.share import config_dir

    synthetic = not args.source
    values = {"max_frames": str(args.frames), "rate_hz": str(args.rate), "score": str(synthetic).lower()}
    bar = tqdm(total=args.frames, unit="frame", desc="demo", disable=args.json, leave=False)
    started = time.monotonic()
    finished_at: list[float] = []

    def done(nodes: list[Any]) -> bool:
        camera, detector = nodes[0], nodes[1]
        bar.update(camera.published - bar.n)
        if not camera.finished.is_set():
            return False
        if not finished_at:
            finished_at.append(time.monotonic())
        handled = detector.counters.processed + detector.counters.dropped_total
        scored = nodes[2].counters.processed if synthetic else handled
        return min(handled, scored) >= camera.published or time.monotonic() - finished_at[0] > 5.0

    with tempfile.TemporaryDirectory() as folder:
        if synthetic:
            values["source"] = DEFAULT_SOURCE
            values |= _demo_params_files(Path(folder), config_dir(), DEFAULT_SOURCE, args.strip)
        else:
            values["source"] = args.source
        try:
            nodes = run_graph("lanes", values, until=done)
        except (GraphError, NodeStartError) as error:
            raise CliError(str(error)) from None
        finally:
            bar.close()
    figures = final_figures(nodes)
    detector = figures.get("lane_detector", {})
    wall = time.monotonic() - started
    figures["wall_s"] = round(wall, 2)
    figures["detector_fps"] = round(detector.get("processed", 0) / max(wall, 1e-9), 2)
    print(json.dumps(figures, indent=2) if args.json else format_figures(figures))
    return 0


def _demo_params_files(folder: Path, config: Path, source: str, strip: str) -> dict[str, str]:
    """Params files for the demo: the detector gets the synthetic drive's camera mounting (what a robot's
    TF would give), the scorer the strip path; everything else as in config/."""
    import yaml

    from refine_perception.bags.lane_bags import drive_mount_params

    detector = yaml.safe_load((config / "lanes.yaml").read_text())
    detector["/**/lane_detector"]["ros__parameters"].update(drive_mount_params(source))
    scorer = yaml.safe_load((config / "lane_scorer.yaml").read_text())
    scorer["/**/lane_scorer"]["ros__parameters"]["strip_path"] = str(Path(strip).resolve())
    files = {}
    for name, doc in (("lane_detector", detector), ("lane_scorer", scorer)):
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        files[f"{name}_params_file"] = str(path)
    return files


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
        if "published" in entry:
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
