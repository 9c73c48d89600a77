"""Why `refine-perception launch` gives every node its own single-threaded executor thread instead of
one rclpy MultiThreadedExecutor: the camera graph (camera_source -> image_converter) sending N frames
at R Hz, timed both ways in the same run.

    ./dev run python -m benchmarks.bench_graph_runner [--frames 60] [--rate 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time

import cv2
import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor

from refine_perception.core.cpu import describe
from refine_perception.graphs import plan
from refine_perception.ros.graph_runner import node_class, run_nodes
from refine_perception.share import config_dir


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _entries(source: str, frames: int, rate: float) -> list:
    values = {"source": source, "max_frames": str(frames), "rate_hz": str(rate), "transport": "compressed"}
    plans = [p for p in plan("camera", values, config_dir()) if p.name != "topic_monitor"]
    return [(node_class(p.executable), p.ros_args()) for p in plans]


def per_node_executors(source: str, frames: int, rate: float) -> dict[str, float]:
    cpu, start = _cpu_seconds(), time.perf_counter()
    nodes = run_nodes(_entries(source, frames, rate), args=[], until=lambda n: n[0].finished.is_set())
    return {"wall_s": time.perf_counter() - start, "cpu_s": _cpu_seconds() - cpu,
            "converted": nodes[1].counters.processed}


def one_multithreaded_executor(source: str, frames: int, rate: float) -> dict[str, float]:
    cpu, start = _cpu_seconds(), time.perf_counter()
    rclpy.init(args=[])
    nodes = [cls(cli_args=args, use_global_arguments=False) for cls, args in _entries(source, frames, rate)]
    executor = MultiThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    while not nodes[0].finished.wait(0.05):
        pass
    for node in nodes:
        node.stop()
    executor.shutdown()
    spinner.join(5.0)
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown()
    return {"wall_s": time.perf_counter() - start, "cpu_s": _cpu_seconds() - cpu,
            "converted": nodes[1].counters.processed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        for i in range(5):
            cv2.imwrite(f"{folder}/{i}.png", rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
        results = {
            "per_node_executors": per_node_executors(folder, args.frames, args.rate),
            "multithreaded_executor": one_multithreaded_executor(folder, args.frames, args.rate),
        }
    ideal = args.frames / args.rate
    results["ideal_wall_s"] = ideal
    results["cpu"] = describe()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"CPU: {results['cpu']}")
    print(f"{args.frames} frames at {args.rate:g} Hz (ideal {ideal:.2f} s of publishing)")
    for name in ("per_node_executors", "multithreaded_executor"):
        r = results[name]
        print(f"  {name:24s} wall {r['wall_s']:6.2f} s  cpu {r['cpu_s']:6.2f} s  converted {r['converted']}")


if __name__ == "__main__":
    main()
