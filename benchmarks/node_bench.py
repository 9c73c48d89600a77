"""A node end to end over DDS, between two processes, for the node benchmarks (bench_lanes_node,
bench_instances_node): this process publishes bgr8 images and receives the node's results; the node runs
as its installed executable.

Phases, in one run so the figures compare:
  1. lock-step: the next image goes out when the previous result is back: latency p50/p95/max and FPS;
  2. overload: images at twice the lock-step rate for `overload_s` seconds: FPS sustained, latency
     (bounded: input depth 1, stale frames dropped and counted by the node), drops, and the node's
     resident memory before and after (plus `memory_frames` more frames).

The lock-step latency is split in two with the node's own figure from /diagnostics (receipt of the image to
its results published): the rest is the way there and back (serialising, DDS, deserialising, waking the
node's worker).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from refine_perception.core.cpu import describe
from refine_perception.models.bpr.refine import INFERENCE_NMS
from refine_perception.ros.image_messages import numpy_to_image
from refine_perception.runtime import BACKENDS, PRECISIONS

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values) * 1e3
    return {"p50": round(float(np.percentile(array, 50)), 1), "p95": round(float(np.percentile(array, 95)), 1),
            "max": round(float(array.max()), 1), "count": len(values)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Probe:
    """Publishes stamped images and records when each result comes back (stamps are wall time)."""

    def __init__(self, images: list[Image], result_type: type) -> None:
        self.node = rclpy.create_node("bench_node_probe")
        self.pub = self.node.create_publisher(Image, "bench/image_raw", RELIABLE)
        self.node.create_subscription(result_type, "bench/results", self._on_result, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node_latency: tuple[float, dict[str, str]] | None = None  # (receipt time, the node's latency values)
        self.node_error = ""  # the node's /diagnostics message while its status is ERROR (no model, ...)
        self.images = images
        self.sent = 0
        self.latencies: list[tuple[float, float]] = []  # (receipt time, latency)
        self.returned: set[tuple[int, int]] = set()
        self.arrived = threading.Condition()

    def _on_result(self, msg: Any) -> None:
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.arrived:
            self.latencies.append((now, now - stamp))
            self.returned.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            self.arrived.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.level == DiagnosticStatus.ERROR:
                with self.arrived:
                    self.node_error = status.message
                    self.arrived.notify_all()
            values = {kv.key: kv.value for kv in status.values}
            if "latency_p50_ms" in values:
                with self.arrived:
                    self.node_latency = (time.time(), values)
                    self.arrived.notify_all()

    def node_latency_since(self, since: float, timeout: float) -> dict[str, float]:
        """The node's own latency percentiles (ms) from its first /diagnostics after `since` (wall time)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: self.node_latency is not None and self.node_latency[0] > since, timeout):
                return {}
            values = self.node_latency[1]  # type: ignore[index]
        return {key: round(float(values[f"latency_{key}_ms"]), 1) for key in ("p50", "p95", "max")}

    def send(self) -> tuple[int, int]:
        msg = self.images[self.sent % len(self.images)]
        now = time.time()
        msg.header.stamp = Time(sec=int(now), nanosec=int((now % 1) * 1e9))
        self.pub.publish(msg)
        self.sent += 1
        return msg.header.stamp.sec, msg.header.stamp.nanosec

    def wait_for(self, stamp: tuple[int, int], timeout: float) -> bool:
        """Wait until the result of the image stamped `stamp` is back."""
        with self.arrived:
            return self.arrived.wait_for(lambda: stamp in self.returned, timeout)

    def wait_for_first(self, stamp: tuple[int, int], timeout: float) -> str:
        """Wait for the first result; what went wrong when none comes (the node's ERROR status, or the
        timeout), "" when it came."""
        with self.arrived:
            self.arrived.wait_for(lambda: stamp in self.returned or bool(self.node_error), timeout)
            if stamp in self.returned:
                return ""
            return self.node_error or f"no result within {timeout:g} s"


def node_phases(command: list[str], images: list[Image], result_type: type, frames: int, overload_s: float,
                memory_frames: int) -> dict[str, object]:
    """Start the node (`command`, an installed executable with its ROS arguments; it must read
    bench/image_raw and publish `result_type` on bench/results) and run the lock-step and overload phases."""
    rclpy.init()
    probe = Probe(images, result_type)
    executor = SingleThreadedExecutor()
    executor.add_node(probe.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        log = open(Path(cache) / "node.log", "w+")  # a file, not a pipe: a full pipe would block the node
        node = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while probe.pub.get_subscription_count() == 0:
                if node.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{command[0]} did not come up: {log.read()[-2000:]}")
                time.sleep(0.1)
            problem = probe.wait_for_first(probe.send(), 60)
            if problem:  # a node without a model keeps running (and says why): no figures to take
                log.seek(0)
                raise RuntimeError(f"{command[0]} gave no result: {problem}; its log: {log.read()[-2000:]}")
            for _ in range(4):  # warm-up: first inferences allocate
                probe.wait_for(probe.send(), 60)
            probe.latencies.clear()
            probe.sent = 0

            start = time.perf_counter()
            lost = 0
            for _ in range(frames):
                if not probe.wait_for(probe.send(), 5.0):
                    lost += 1  # best-effort input: a frame can be lost on the way; counted, not waited for
            lock_step_s = time.perf_counter() - start
            if not probe.latencies:
                log.seek(0)
                raise RuntimeError(f"no result came back; the node said: {log.read()[-3000:]}")
            lock_step = {"fps": round((frames - lost) / lock_step_s, 2), "lost": lost,
                         "latency_ms": percentiles([latency for _, latency in probe.latencies]),
                         "in_node_latency_ms": probe.node_latency_since(time.time(), 5.0)}

            rate = 2.0 * lock_step["fps"]
            probe.latencies.clear()
            probe.sent = 0
            rss_before = rss_mb(node.pid)
            start = time.perf_counter()
            overload_frames = int(overload_s * rate) + memory_frames
            for k in range(overload_frames):
                target = start + k / rate
                time.sleep(max(0.0, target - time.perf_counter()))
                probe.send()
            duration = time.perf_counter() - start
            time.sleep(1.0)
            received = [latency for _, latency in probe.latencies]
            overload = {"camera_hz": round(rate, 2), "published": probe.sent, "received": len(received),
                        "dropped": probe.sent - len(received), "fps_sustained": round(len(received) / duration, 2),
                        "latency_ms": percentiles(received),
                        "rss_mb": {"before": round(rss_before, 1), "after": round(rss_mb(node.pid), 1),
                                   "frames": overload_frames}}
        finally:
            node.terminate()
            node.wait(timeout=30)
            log.close()
            executor.shutdown()
            rclpy.try_shutdown()
    return {"lock_step": lock_step, "overload": overload}


def add_arguments(parser: argparse.ArgumentParser, precision_help: str) -> None:
    """The options every node benchmark takes."""
    parser.add_argument("--model", type=Path, default=None, help="weights (default: the shipped model)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="auto: the node's default")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help=precision_help)
    parser.add_argument("--frames", type=int, default=200, help="lock-step frames")
    parser.add_argument("--overload-s", type=float, default=20.0, help="seconds at twice the lock-step rate")
    parser.add_argument("--memory-frames", type=int, default=0, help="extra overload frames to watch memory over")
    parser.add_argument("--repeat", type=int, default=30, help="repeats of the in-process timings")
    parser.add_argument("--json", action="store_true")


def add_boundary_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the segmentation benchmarks: boundary patch refinement on or off."""
    parser.add_argument("--refine-boundaries", action="store_true", help="with boundary patch refinement")
    parser.add_argument("--boundary-model", type=Path, default=None,
                        help="refiner weights (default: the task's shipped refiner)")
    parser.add_argument("--boundary-nms", type=float, default=INFERENCE_NMS,
                        help=f"patch proposal NMS (default {INFERENCE_NMS}, the nodes')")


def boundary_parameters(args: argparse.Namespace) -> list[str]:
    """The node's --ros-args for the refinement options."""
    if not args.refine_boundaries:
        return []
    params = ["-p", "refine_boundaries:=true", "-p", f"boundary_nms:={args.boundary_nms}"]
    return params + (["-p", f"boundary_model:={args.boundary_model}"] if args.boundary_model else [])


def boundary_split(args: argparse.Namespace, task: str, frames: list[tuple[np.ndarray, list[np.ndarray]]]
                   ) -> dict[str, float]:
    """In process, the refinement stage of the node's runtime on each frame's masks: medians per frame and
    per instance, mean patches per frame (empty without --refine-boundaries)."""
    if not args.refine_boundaries:
        return {}
    from refine_perception.boundaries.stage import BoundaryStage
    from refine_perception.runtime import RuntimeConfig

    stage = BoundaryStage.open(str(args.boundary_model or ""), task, RuntimeConfig.of_node(args.backend, "cpu",
                               args.precision, 0), args.boundary_nms)
    runs = []
    for k in range(max(args.repeat, len(frames))):
        image, masks = frames[k % len(frames)]
        stage(image, masks)
        runs.append((stage.last.ms, stage.last.ms_per_instance, stage.last.patches))
    ms, per_instance, patches = (np.array(column) for column in zip(*runs))
    return {"boundary_backend": str(stage.info), "boundary_ms": round(float(np.median(ms)), 1),
            "boundary_ms_per_instance": round(float(np.median(per_instance)), 2),
            "boundary_patches": round(float(patches.mean()), 1)}


def boundary_line(split: dict[str, Any]) -> str:
    return (f"; boundary refinement ({split['boundary_backend']}) {split['boundary_ms']} ms a frame, "
            f"{split['boundary_ms_per_instance']} ms an instance, {split['boundary_patches']} patches"
            if "boundary_ms" in split else "")


def _bgr8_messages(frames: list[np.ndarray]) -> list[Image]:
    """The frames as bgr8 Images in the camera's optical frame (stamped when sent)."""
    images = []
    for frame in frames:
        msg = numpy_to_image(frame, "bgr8")
        msg.header.frame_id = "camera_optical_frame"
        images.append(msg)
    return images


def _print_node_figures(figures: dict[str, Any]) -> None:
    """The CPU, the model and the lock-step and overload lines of node_phases' figures."""
    ls, ov = figures["lock_step"], figures["overload"]
    print(f"CPU: {figures['cpu']}")
    print(f"model {figures['model']}, backend {figures['pipeline']['backend']}")
    print(f"lock-step   {ls['fps']:6.2f} FPS   latency p50 {ls['latency_ms']['p50']} ms  p95 {ls['latency_ms']['p95']} ms  "
          f"max {ls['latency_ms']['max']} ms")
    if ls["in_node_latency_ms"]:
        inside = ls["in_node_latency_ms"]
        print(f"            in the node (image received -> results published) p50 {inside['p50']} ms  p95 {inside['p95']} ms;"
              f" there and back p50 {ls['latency_ms']['p50'] - inside['p50']:.1f} ms")
    print(f"overload    camera {ov['camera_hz']} Hz -> {ov['fps_sustained']} FPS sustained, {ov['dropped']} of "
          f"{ov['published']} dropped, latency p50 {ov['latency_ms']['p50']} ms  p95 {ov['latency_ms']['p95']} ms  "
          f"max {ov['latency_ms']['max']} ms; node RSS {ov['rss_mb']['before']} -> {ov['rss_mb']['after']} MB "
          f"over {ov['rss_mb']['frames']} frames")


def run_benchmark(args: argparse.Namespace, frames: list[np.ndarray], command: list[str], result_type: type,
                  pipeline: Callable[[], dict[str, Any]], pipeline_line: Callable[[dict[str, Any]], str]) -> None:
    """The node phases on `frames`, then `pipeline()` (in-process timings, once the node is gone); prints
    the figures (JSON with --json), `pipeline_line` giving the in-process line."""
    figures = {"cpu": describe(), "model": str(args.model),
               **node_phases(command, _bgr8_messages(frames), result_type, args.frames, args.overload_s,
                             args.memory_frames),
               "pipeline": pipeline(), "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    _print_node_figures(figures)
    print(pipeline_line(figures["pipeline"]))
