"""CLRNet network forward time per backbone and input size at batch 1 on the CPU: torch eager and
onnxruntime, each with 2 threads, medians over repeated runs measured in the same process. 320x800 is
the paper's input; 160x400 is the shipped default model's.

    ./dev run python -m benchmarks.bench_clrnet [--repeat 5] [--backbones resnet18 dla34] [--sizes 320x800] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import onnxruntime as ort
import torch

from refine_perception.models.backbones import build_backbone
from refine_perception.models.clrnet.model import CLRNet


def median_ms(run: Callable[[], object], repeat: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(backbone: str, size: tuple[int, int], repeat: int, threads: int) -> dict[str, float | int | str]:
    torch.manual_seed(0)
    model = CLRNet(backbone, input_size=size).eval()
    images = torch.rand(1, 3, *size)
    with torch.inference_mode():
        eager = median_ms(lambda: model(images), repeat)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "clrnet.onnx")
        torch.onnx.export(model, (images,), path, opset_version=17, input_names=["images"],
                          output_names=["lanes", "types", "colors"], dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {"images": images.numpy()}
        onnx_ms = median_ms(lambda: session.run(None, feed), repeat)
        size_mb = os.path.getsize(path) / 1e6
    return {
        "backbone": backbone,
        "input": f"{size[0]}x{size[1]}",
        "params": sum(p.numel() for p in model.parameters()),
        "torch_eager_ms": round(eager, 1),
        "onnxruntime_ms": round(onnx_ms, 1),
        "speedup": round(eager / onnx_ms, 2),
        "onnx_mb": round(size_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet34", "dla34"])
    parser.add_argument("--sizes", nargs="+", default=["320x800", "160x400"], help="input HEIGHTxWIDTH")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    results = [measure(name, size, args.repeat, args.threads) for name in args.backbones for size in sizes
               if size[1] % build_backbone(name).size_multiple == 0]  # DLA-34 needs sides divisible by 32
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['backbone']:9s} {r['input']:>7s} {r['params']:>11,} params  torch eager {r['torch_eager_ms']:7.1f} ms  "
              f"onnxruntime {r['onnxruntime_ms']:7.1f} ms  ({r['speedup']:.2f}x)  onnx {r['onnx_mb']} MB")


if __name__ == "__main__":
    main()
