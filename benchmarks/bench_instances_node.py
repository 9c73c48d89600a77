"""The instance_segmenter node end to end over DDS (benchmarks/node_bench.py: lock-step, 2x overload,
memory) on 640x480 bgr8 images of held-out sticks scenes, the shipped model on the node's CPU default
backend; then, in this process after the node is gone, where a frame's time goes: the network (torch eager
and the node's backend) and the clustering, medians over the same images.

The node runs without CameraInfo (use_camera_info:=false), so it gives no grasps: the grasp fit is a few
vector operations per stick and the DDS round trip of three topics would measure the probe, not the node.

    ./dev run python -m benchmarks.bench_instances_node [--frames 200] [--backend auto] [--precision auto] [--json]
        [--refine-boundaries [--boundary-model F]]   (the node with boundary patch refinement, and its cost)
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import numpy as np

from benchmarks import node_bench
from refine_msgs.msg import InstanceArray
from refine_perception.core.stats import interleaved_median_ms, median_ms
from refine_perception.data.synthetic.sticks import sticks_scenes
from refine_perception.instances.pipeline import default_instance_model_path
from refine_perception.instances.predict import InstancePredictor
from refine_perception.runtime import RuntimeConfig


def pipeline_split(args: argparse.Namespace, frames: list[np.ndarray]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as cache:
        eager, _ = InstancePredictor.from_file(args.model, config=RuntimeConfig("torch", "cpu", "fp32", cache_dir=cache))
        node, info = InstancePredictor.from_file(args.model, config=replace(
            RuntimeConfig.of_node(args.backend, "cpu", args.precision, 0), cache_dir=cache))
        inputs = [node.inputs([frame]) for frame in frames]
        outputs = [node.network(batch) for batch in inputs]
        turn = iter(range(10**9))
        times = interleaved_median_ms({"eager": lambda: eager.network(inputs[next(turn) % len(inputs)]),
                                       "node": lambda: node.network(inputs[next(turn) % len(inputs)])},
                                      rounds=max(1, args.repeat // 3))
        eager_ms, node_ms = times["eager"], times["node"]
        cluster_ms = median_ms(lambda: node.decoder(outputs[next(turn) % len(outputs)], node.settings), args.repeat)
        whole_ms = median_ms(lambda: node([frames[next(turn) % len(frames)]]), args.repeat)
        masks = [(frame, [r.mask for r in node([frame])[0]]) for frame in frames]
    return {"backend": str(info), "torch_eager_network_ms": round(eager_ms, 1), "network_ms": round(node_ms, 1),
            "clustering_ms": round(cluster_ms, 1), "frame_ms": round(whole_ms, 1),
            "network_speedup": round(eager_ms / node_ms, 2), **node_bench.boundary_split(args, "sticks", masks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    node_bench.add_arguments(parser, "auto: the node's default")
    node_bench.add_boundary_arguments(parser)
    args = parser.parse_args()
    args.model = args.model or default_instance_model_path()
    frames = [scene.image for scene in sticks_scenes(2, 12)]
    command = ["instance_segmenter", "--ros-args", "-p", f"backend:={args.backend}", "-p", f"precision:={args.precision}",
               "-p", "use_camera_info:=false", "-p", f"model:={args.model}",
               *node_bench.boundary_parameters(args), "-r", "image_raw:=bench/image_raw", "-r", "instances:=bench/results"]
    node_bench.run_benchmark(args, frames, command, InstanceArray, lambda: pipeline_split(args, frames), lambda pl: (
        f"in-process  network: torch eager {pl['torch_eager_network_ms']} ms, {pl['backend']} {pl['network_ms']} ms "
        f"({pl['network_speedup']}x); clustering {pl['clustering_ms']} ms; whole frame {pl['frame_ms']} ms"
        + node_bench.boundary_line(pl)))

if __name__ == "__main__":
    main()
