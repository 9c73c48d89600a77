"""The street_segmenter node end to end over DDS (benchmarks/node_bench.py: lock-step, 2x overload, memory)
on 1024x512 bgr8 images of held-out street scenes, the shipped model (or --model) on the node's CPU default
backend; then, in this process after the node is gone, the network on torch eager, onnxruntime fp32 and
onnxruntime int8 and the node's backend, and the phases of a frame (label map, instances), medians over the
same images.

The node runs without CameraInfo (no outline markers). `--stage 1 --no-instances` measures the coarsest
map alone (the network then stops after the encoder and the first map).

    ./dev run python -m benchmarks.bench_street_node [--model F] [--frames 200] [--stage 5] [--no-instances] [--json]
        [--refine-boundaries [--boundary-model F]]   (the node with boundary patch refinement, and its cost)
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import numpy as np
from sensor_msgs.msg import Image

from benchmarks import node_bench
from refine_perception.core.stats import interleaved_median_ms, median_ms
from refine_perception.data.synthetic.street import render_street
from refine_perception.models.preprocess import crop_resize, to_network
from refine_perception.runtime import RuntimeConfig
from refine_perception.segmentation.pipeline import default_street_model_path
from refine_perception.segmentation.predict import StreetPredictor


def pipeline_split(args: argparse.Namespace, frames: list[np.ndarray]) -> dict[str, object]:
    stages, instances = args.stage, not args.no_instances
    figures: dict[str, object] = {}
    turn = iter(range(10**9))
    with tempfile.TemporaryDirectory() as cache:
        runtimes = {"torch eager fp32": RuntimeConfig("torch", "cpu", "fp32", cache_dir=cache),
                    "onnxruntime fp32": RuntimeConfig("onnxruntime", "cpu", "fp32", cache_dir=cache),
                    "onnxruntime int8": RuntimeConfig("onnxruntime", "cpu", "int8", cache_dir=cache),
                    "node": replace(RuntimeConfig.of_node(args.backend, "cpu", args.precision, 0), cache_dir=cache)}
        runs = {}
        for name, config in runtimes.items():
            predictor, info = StreetPredictor.from_file(args.model, config, stages=stages, instances=instances)
            batches = [to_network(crop_resize(frame, 0, predictor.input_size)) for frame in frames]
            runs[f"{name} network_ms"] = lambda predictor=predictor: predictor.run(batches[next(turn) % len(batches)])
        figures.update({key: round(ms, 1) for key, ms in
                        interleaved_median_ms(runs, rounds=max(1, args.repeat // 3)).items()})
        figures["backend"] = str(info)  # the last one opened: the node's
        phases: list[dict[str, float]] = []

        def frame_once() -> None:
            timings: dict[str, float] = {}
            predictor([frames[next(turn) % len(frames)]], stages=[stages - 1], instances=instances, timings=timings)
            phases.append(timings)

        figures["frame_ms"] = round(median_ms(frame_once, args.repeat), 1)
        for phase in ("labels", "instances"):
            figures[f"{phase}_ms"] = round(float(np.median([p[phase] for p in phases])), 1)
        if instances:
            found = [(frame, [p.mask for p in predictor([frame])[0].instances]) for frame in frames]
            figures.update(node_bench.boundary_split(args, "street", found))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    node_bench.add_arguments(parser, "auto: the node's default")
    parser.add_argument("--stage", type=int, default=5, help="label map published (1 coarsest .. 5 finest)")
    parser.add_argument("--no-instances", action="store_true", help="label map only: the network stops at --stage")
    node_bench.add_boundary_arguments(parser)
    args = parser.parse_args()
    args.model = args.model or default_street_model_path()
    frames = [render_street(np.random.SeedSequence([2, k])).image for k in range(12)]
    command = ["street_segmenter", "--ros-args", "-p", f"backend:={args.backend}", "-p", f"precision:={args.precision}",
               "-p", "use_camera_info:=false", "-p", f"model:={args.model}", "-p", f"stage:={args.stage}",
               "-p", f"instances:={'false' if args.no_instances else 'true'}", *node_bench.boundary_parameters(args),
               "-r", "image_raw:=bench/image_raw", "-r", "labels:=bench/results"]
    node_bench.run_benchmark(args, frames, command, Image, lambda: pipeline_split(args, frames), lambda pl: (
        "in-process  network: " + ", ".join(f"{k.removesuffix(' network_ms')} {v} ms" for k, v in pl.items()
                                            if k.endswith("network_ms"))
        + f" (node: {pl['backend']}); label map {pl['labels_ms']} ms, instances {pl['instances_ms']} ms, "
        f"whole frame {pl['frame_ms']} ms" + node_bench.boundary_line(pl)))


if __name__ == "__main__":
    main()
