"""CLRNet network forward time per backbone and input size at batch 1 on the CPU: torch eager,
onnxruntime fp32 and onnxruntime int8 (the node's CPU default; random weights here, so only the time
means anything), each with 2 threads, medians over repeated runs measured in the same process. 320x800 is
the paper's input; 224x560 is the shipped default model's.

    ./dev run python -m benchmarks.bench_clrnet [--repeat 5] [--backbones resnet18 dla34] [--sizes 320x800] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch

from refine_perception.core.cpu import describe
from refine_perception.lanes.backends import INPUT_NAME, export_onnx
from refine_perception.lanes.quantize import calibration_images, quantize_onnx
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
        path = Path(folder) / "clrnet.onnx"
        export_onnx(model, path)
        quantized = Path(folder) / "clrnet-int8.onnx"
        quantize_onnx(path, quantized, calibration_images(size, 270, num=8), INPUT_NAME)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        feed = {INPUT_NAME: images.numpy()}
        timings = {}
        for name, file in (("onnxruntime_ms", path), ("onnxruntime_int8_ms", quantized)):
            session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
            timings[name] = median_ms(lambda: session.run(None, feed), repeat)
        size_mb = path.stat().st_size / 1e6
    return {
        "backbone": backbone,
        "input": f"{size[0]}x{size[1]}",
        "params": sum(p.numel() for p in model.parameters()),
        "torch_eager_ms": round(eager, 1),
        **{name: round(ms, 1) for name, ms in timings.items()},
        "speedup": round(eager / timings["onnxruntime_ms"], 2),
        "speedup_int8": round(eager / timings["onnxruntime_int8_ms"], 2),
        "onnx_mb": round(size_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet34", "dla34"])
    parser.add_argument("--sizes", nargs="+", default=["320x800", "224x560"], help="input HEIGHTxWIDTH")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    results = [measure(name, size, args.repeat, args.threads) for name in args.backbones for size in sizes
               if size[1] % build_backbone(name).size_multiple == 0]  # DLA-34 needs sides divisible by 32
    if args.json:
        print(json.dumps({"cpu": describe(), "results": results}, indent=2))
        return
    print(f"CPU: {describe()}")
    for r in results:
        print(f"{r['backbone']:9s} {r['input']:>7s} {r['params']:>11,} params  torch eager {r['torch_eager_ms']:7.1f} ms  "
              f"onnxruntime {r['onnxruntime_ms']:7.1f} ms ({r['speedup']:.2f}x)  int8 {r['onnxruntime_int8_ms']:7.1f} ms "
              f"({r['speedup_int8']:.2f}x)  onnx {r['onnx_mb']} MB")


if __name__ == "__main__":
    main()
