"""CLRNet network forward time per backbone and input size at batch 1 on the CPU: torch eager,
onnxruntime fp32/int8 (int8: the node's CPU default) and OpenVINO fp32/int8, through the shared runtime,
each with 2 threads, medians over repeated runs measured in the same process (random weights here, so only
the time means anything). 320x800 is the paper's input; 224x560 is the shipped default model's.

    ./dev run python -m benchmarks.bench_clrnet [--repeat 5] [--backbones resnet18 dla34] [--sizes 320x800] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from benchmarks.bench_networks import measure_file, print_row
from refine_perception.core.cpu import describe
from refine_perception.models.backbones import build_backbone
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.clrnet.weights import save_lane_model


def measure(backbone: str, size: tuple[int, int], repeat: int, threads: int, folder: Path) -> dict[str, object]:
    torch.manual_seed(0)
    path = folder / f"clrnet-{backbone}-{size[0]}x{size[1]}.safetensors"
    save_lane_model(path, CLRNet(backbone, input_size=size).eval(), backbone, {"cut_height": 270})
    return {"backbone": backbone, **measure_file(path, repeat, threads, folder)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet34", "dla34"])
    parser.add_argument("--sizes", nargs="+", default=["320x800", "224x560"], help="input HEIGHTxWIDTH")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    if not args.json:
        print(f"CPU: {describe()}; {args.threads} threads, batch 1, median of {args.repeat}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.backbones:
            for size in sizes:
                if size[1] % build_backbone(name).size_multiple:
                    continue  # DLA-34 needs sides divisible by 32
                results.append(measure(name, size, args.repeat, args.threads, Path(folder)))
                if not args.json:
                    print(f"{name:9s}", end=" ")
                    print_row(results[-1])
    if args.json:
        print(json.dumps({"cpu": describe(), "threads": args.threads, "results": results}, indent=2))


if __name__ == "__main__":
    main()
