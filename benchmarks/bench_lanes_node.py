"""The lane_detector node end to end over DDS (benchmarks/node_bench.py: lock-step, 2x overload, memory)
on 1640x590 bgr8 images of the synthetic drive, then, in this process after the node is gone, the
per-frame time of plain PyTorch eager forward + decoding against the node's backend + decoding, on the
same model and images, timed in turns, and their ratio.

    ./dev run python -m benchmarks.bench_lanes_node [--frames 200] [--backend onnxruntime] [--precision auto] [--json]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from benchmarks.node_bench import add_arguments, run_benchmark
from refine_msgs.msg import LaneArray
from refine_perception.core.stats import interleaved_median_ms
from refine_perception.data.synthetic.road import road_sample
from refine_perception.lanes.pipeline import default_model_path
from refine_perception.models.clrnet.decode import DecodeSettings
from refine_perception.models.clrnet.predict import LanePredictor
from refine_perception.runtime import RuntimeConfig, load_model, open_model


def pipeline_ratio(args: argparse.Namespace, frames: list[np.ndarray]) -> dict[str, object]:
    model = load_model(args.model)
    settings = DecodeSettings(cut_height=int(model.metadata.get("cut_height", 270)))
    with tempfile.TemporaryDirectory() as cache:
        torch_net = open_model(model, RuntimeConfig("torch", "cpu", "fp32", cache_dir=cache))
        eager = LanePredictor(torch_net, torch_net.input_size, settings)
        backend = open_model(model, RuntimeConfig(backend=args.backend, precision=args.precision, cache_dir=cache))
        fast = LanePredictor(backend, backend.input_size, settings)
        frame = iter(range(10**9))
        times = interleaved_median_ms({"eager": lambda: eager([frames[next(frame) % len(frames)]]),
                                       "fast": lambda: fast([frames[next(frame) % len(frames)]])},
                                      rounds=max(1, args.repeat // 3))
        eager_ms, fast_ms = times["eager"], times["fast"]
    return {"torch_eager_ms": round(eager_ms, 1), f"{backend.info.name}_ms": round(fast_ms, 1),
            "backend": str(backend.info),
            "speedup": round(eager_ms / fast_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, "auto: int8 on the CPU, as the node's default")
    args = parser.parse_args()
    args.model = args.model or default_model_path()
    samples = [road_sample(7, i) for i in range(12)]
    frames = [s.image for s in samples]
    command = ["lane_detector", "--ros-args", "-p", f"backend:={args.backend}", "-p", "use_camera_info:=false",
               "-p", f"precision:={args.precision}", "-p", f"model:={args.model}",
               "-r", "image_raw:=bench/image_raw", "-r", "lanes:=bench/results"]
    run_benchmark(args, frames, command, LaneArray, lambda: pipeline_ratio(args, frames), lambda pl: (
        f"in-process  torch eager + decode {pl['torch_eager_ms']} ms, {pl['backend']} + decode "
        f"{[v for k, v in pl.items() if k.endswith('_ms') and not k.startswith('torch')][0]} ms: {pl['speedup']}x"))

if __name__ == "__main__":
    main()
