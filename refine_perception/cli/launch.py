"""`refine-perception launch` (any graph, in one process) and `refine-perception demo` (the main job)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from refine_perception.cli import CliError
from refine_perception.graphs import GRAPHS, GraphError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "launch",
        help="run a node graph in one process (what `ros2 launch refine_perception <graph>.launch.py` starts)",
        description="Runs the nodes of a graph in this process on a multi-threaded executor, with the same "
        "params files and arguments as launch/<graph>.launch.py. Stop with Ctrl-C.",
    )
    p.add_argument("graph", nargs="?", help=f"one of: {', '.join(GRAPHS)}")
    p.add_argument("arguments", nargs="*", metavar="name:=value", help="launch arguments, as for ros2 launch")
    p.add_argument("--show-args", action="store_true", help="list the graph's arguments and exit")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="print the final figures of every node as JSON")
    p.set_defaults(func=run_launch)

    d = sub.add_parser(
        "demo",
        help="the main job: the camera graph on the embedded sample drive, printing what flows",
        description="Runs the camera graph (camera_source -> image_converter, topic_monitor) on the "
        "embedded sample drive, or on --source, and prints rates, latencies and drops.",
    )
    d.add_argument("--frames", type=int, default=50, help="frames to send through the graph (default 50)")
    d.add_argument("--source", default="", help="video file, image folder or glob instead of the sample drive")
    d.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz, 0 = lock-step (default 10)")
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

    from refine_perception.ros.graph_runner import NodeStartError, run_graph

    values = {"max_frames": str(args.frames), "rate_hz": str(args.rate)}
    if args.source:
        values["source"] = args.source
    bar = tqdm(total=args.frames, unit="frame", desc="demo", disable=args.json, leave=False)
    started = time.monotonic()
    finished_at: list[float] = []

    def done(nodes: list[Any]) -> bool:
        camera, converter = nodes[0], nodes[1]
        bar.update(camera.published - bar.n)
        if not camera.finished.is_set():
            return False
        if not finished_at:
            finished_at.append(time.monotonic())
        handled = converter.counters.processed + converter.counters.dropped_total
        return handled >= camera.published or time.monotonic() - finished_at[0] > 2.0

    try:
        nodes = run_graph("camera", values, until=done)
    except (GraphError, NodeStartError) as error:
        raise CliError(str(error)) from None
    finally:
        bar.close()
    figures = final_figures(nodes)
    figures["wall_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(figures, indent=2) if args.json else format_figures(figures))
    return 0


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
        lines.append(f"{name}: {text}" if "topics" not in entry else f"{name}:")
        for topic, stats in entry.get("topics", {}).items():
            age = stats.get("age_ms", {})
            age_text = f", age p50 {age['p50']:.1f} ms" if age else ""
            lines.append(
                f"    {topic:36s} {stats['messages']:6d} msgs {stats['rate_hz']:7.2f} Hz "
                f"{stats['mb_per_s']:7.3f} MB/s{age_text}"
            )
    return "\n".join(lines)
