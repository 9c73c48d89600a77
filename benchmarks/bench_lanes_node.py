"""The lane_detector node end to end over DDS, between two processes: this one publishes 1640x590 bgr8
images and receives the LaneArrays; the node runs as its installed executable.

Phases (all in one run, so the figures compare):
  1. lock-step: the next image goes out when the previous LaneArray is back: latency p50/p95/max and FPS;
  2. overload: images at twice the lock-step rate for --overload-s seconds: FPS sustained, latency
     (bounded: input depth 1, stale frames dropped and counted by the node), drops;
  3. memory (with --memory-frames N): the node's resident memory before and after N more frames;
  4. in this process, after the node is gone: per-frame time of plain PyTorch eager forward + decoding
     against the node's backend + decoding, on the same model and images, and their ratio.

    ./dev run python -m benchmarks.bench_lanes_node [--frames 200] [--backend onnxruntime] [--precision auto] [--json]
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
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from refine_msgs.msg import LaneArray
from refine_perception.core.cpu import describe
from refine_perception.core.stats import median_ms
from refine_perception.data.synthetic.road import road_sample
from refine_perception.lanes.pipeline import default_model_path
from refine_perception.models.clrnet.decode import DecodeSettings
from refine_perception.models.clrnet.predict import LanePredictor
from refine_perception.ros.image_messages import numpy_to_image
from refine_perception.runtime import BACKENDS, PRECISIONS, RuntimeConfig, load_model, open_model

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
    """Publishes stamped images and records when each LaneArray comes back (stamps are wall time)."""

    def __init__(self, images: list[Image]) -> None:
        self.node = rclpy.create_node("bench_lanes_probe")
        self.pub = self.node.create_publisher(Image, "bench/image_raw", RELIABLE)
        self.node.create_subscription(LaneArray, "bench/lanes", self._on_lanes, RELIABLE)
        self.images = images
        self.sent = 0
        self.latencies: list[tuple[float, float]] = []  # (receipt time, latency)
        self.returned: set[tuple[int, int]] = set()
        self.arrived = threading.Condition()

    def _on_lanes(self, msg: LaneArray) -> None:
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.arrived:
            self.latencies.append((now, now - stamp))
            self.returned.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            self.arrived.notify_all()

    def send(self) -> tuple[int, int]:
        msg = self.images[self.sent % len(self.images)]
        now = time.time()
        msg.header.stamp = Time(sec=int(now), nanosec=int((now % 1) * 1e9))
        self.pub.publish(msg)
        self.sent += 1
        return msg.header.stamp.sec, msg.header.stamp.nanosec

    def wait_for(self, stamp: tuple[int, int], timeout: float) -> bool:
        """Wait until the LaneArray of the image stamped `stamp` is back."""
        with self.arrived:
            return self.arrived.wait_for(lambda: stamp in self.returned, timeout)


def node_phases(args: argparse.Namespace, images: list[Image]) -> dict[str, object]:
    rclpy.init()
    probe = Probe(images)
    executor = SingleThreadedExecutor()
    executor.add_node(probe.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        command = ["lane_detector", "--ros-args", "-p", f"backend:={args.backend}", "-p", "use_camera_info:=false",
                   "-p", f"precision:={args.precision}",
                   "-p", f"model:={args.model}", "-r", "image_raw:=bench/image_raw", "-r", "lanes:=bench/lanes"]
        log = open(Path(cache) / "lane_detector.log", "w+")  # a file, not a pipe: a full pipe would block the node
        node = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while probe.pub.get_subscription_count() == 0:
                if node.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"lane_detector did not come up: {log.read()[-2000:]}")
                time.sleep(0.1)
            for _ in range(5):  # warm-up: first inferences allocate
                probe.wait_for(probe.send(), 60)
            probe.latencies.clear()
            probe.sent = 0

            start = time.perf_counter()
            lost = 0
            for _ in range(args.frames):
                if not probe.wait_for(probe.send(), 5.0):
                    lost += 1  # best-effort input: a frame can be lost on the way; counted, not waited for
            lock_step_s = time.perf_counter() - start
            if not probe.latencies:
                log.seek(0)
                raise RuntimeError(f"no LaneArray came back; the node said: {log.read()[-3000:]}")
            lock_step = {"fps": round((args.frames - lost) / lock_step_s, 2), "lost": lost,
                         "latency_ms": percentiles([lat for _, lat in probe.latencies])}

            rate = 2.0 * lock_step["fps"]
            probe.latencies.clear()
            probe.sent = 0
            rss_before = rss_mb(node.pid)
            start = time.perf_counter()
            overload_frames = int(args.overload_s * rate) + args.memory_frames
            for k in range(overload_frames):
                target = start + k / rate
                time.sleep(max(0.0, target - time.perf_counter()))
                probe.send()
            duration = time.perf_counter() - start
            time.sleep(1.0)
            received = [lat for _, lat in probe.latencies]
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


def pipeline_ratio(args: argparse.Namespace, frames: list[np.ndarray]) -> dict[str, object]:
    model = load_model(args.model)
    settings = DecodeSettings(cut_height=int(model.metadata.get("cut_height", 270)))
    with tempfile.TemporaryDirectory() as cache:
        torch_net = open_model(model, RuntimeConfig("torch", "cpu", "fp32", cache_dir=cache))
        eager = LanePredictor(torch_net, torch_net.input_size, settings)
        backend = open_model(model, RuntimeConfig(backend=args.backend, precision=args.precision, cache_dir=cache))
        fast = LanePredictor(backend, backend.input_size, settings)
        frame = iter(range(10**9))
        eager_ms = median_ms(lambda: eager([frames[next(frame) % len(frames)]]), args.repeat)
        fast_ms = median_ms(lambda: fast([frames[next(frame) % len(frames)]]), args.repeat)
    return {"torch_eager_ms": round(eager_ms, 1), f"{backend.info.name}_ms": round(fast_ms, 1),
            "backend": str(backend.info),
            "speedup": round(eager_ms / fast_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="weights (default: the shipped model)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="auto: the node's default")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: int8 on the CPU, as the node's default")
    parser.add_argument("--frames", type=int, default=200, help="lock-step frames")
    parser.add_argument("--overload-s", type=float, default=20.0, help="seconds at twice the lock-step rate")
    parser.add_argument("--memory-frames", type=int, default=0, help="extra overload frames to watch memory over")
    parser.add_argument("--repeat", type=int, default=30, help="repeats of the in-process timing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.model = args.model or default_model_path()
    samples = [road_sample(7, i) for i in range(12)]
    frames = [s.image for s in samples]
    images = []
    for image in frames:
        msg = numpy_to_image(image, "bgr8")
        msg.header.frame_id = "camera_optical_frame"
        images.append(msg)
    figures = {"cpu": describe(), "model": str(args.model), **node_phases(args, images),
               "pipeline": pipeline_ratio(args, frames), "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"CPU: {figures['cpu']}")
    ls, ov, pl = figures["lock_step"], figures["overload"], figures["pipeline"]
    print(f"model {figures['model']}, backend {pl['backend']}")
    print(f"lock-step   {ls['fps']:6.2f} FPS   latency p50 {ls['latency_ms']['p50']} ms  p95 {ls['latency_ms']['p95']} ms  "
          f"max {ls['latency_ms']['max']} ms")
    print(f"overload    camera {ov['camera_hz']} Hz -> {ov['fps_sustained']} FPS sustained, {ov['dropped']} of "
          f"{ov['published']} dropped, latency p50 {ov['latency_ms']['p50']} ms  p95 {ov['latency_ms']['p95']} ms  "
          f"max {ov['latency_ms']['max']} ms; node RSS {ov['rss_mb']['before']} -> {ov['rss_mb']['after']} MB "
          f"over {ov['rss_mb']['frames']} frames")
    print(f"in-process  torch eager + decode {pl['torch_eager_ms']} ms, {pl['backend']} + decode "
          f"{[v for k, v in pl.items() if k.endswith('_ms') and not k.startswith('torch')][0]} ms: {pl['speedup']}x")


if __name__ == "__main__":
    main()
