"""CLRNet training-step time on the CPU (forward, CLRNet loss, backward, AdamW) in the three layouts the
training loop could use: fp32 with contiguous tensors (the loop before 2026-11-22), fp32 channels-last, and
bfloat16 autocast with channels-last (what `refine-train` does now on CPUs with AVX512-BF16 or AMX). One
batch of rendered road scenes with their real targets, medians over repeated steps in one process.

    ./dev run python -m benchmarks.bench_training [--repeat 5] [--batch 8] [--sizes 224x560 320x800] [--json]
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

import torch

from benchmarks.bench_clrnet import median_ms
from refine_perception.core.cpu import describe
from refine_perception.models.clrnet.loss import CLRNetLoss
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.training.config import AugmentConfig, DatasetConfig
from refine_perception.training.lane_data import LaneTrainingSet, collate
from refine_perception.training.trainer import _as_float, _fast_bf16

MODES = {"fp32": (torch.contiguous_format, False), "fp32_channels_last": (torch.channels_last, False),
         "bf16_channels_last": (torch.channels_last, True)}


def measure(size: tuple[int, int], batch: int, repeat: int) -> dict[str, object]:
    data = LaneTrainingSet((DatasetConfig(kind="synthetic", seed=99, size=batch, cut_height=270),), size, 5,
                           AugmentConfig(), 0)
    images, targets = collate([data[i] for i in range(batch)])
    criterion = CLRNetLoss.from_preset("culane")
    row: dict[str, object] = {"input": f"{size[0]}x{size[1]}", "batch": batch}
    for name, (layout, bf16) in MODES.items():
        torch.manual_seed(0)
        model = CLRNet("resnet18", 5, size, 96, 18, "lane").train().to(memory_format=layout)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        inputs = images.contiguous(memory_format=layout)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                output = model(inputs)
            loss, _ = criterion(_as_float(output), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        row[f"{name}_ms"] = round(median_ms(step, repeat), 1)
    for name in list(MODES)[1:]:
        row[f"{name}_speedup"] = round(row["fp32_ms"] / row[f"{name}_ms"], 2)  # type: ignore[operator]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", nargs="+", default=["224x560"], help="input HEIGHTxWIDTH")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native = _fast_bf16(torch.device("cpu"))
    results = [measure(tuple(int(v) for v in size.split("x")), args.batch, args.repeat) for size in args.sizes]
    if args.json:
        print(json.dumps({"cpu": describe(), "native_bf16": native, "results": results}, indent=2))
        return
    print(f"CPU: {describe()}")
    print(f"CPU with native bfloat16 (autocast used by refine-train): {native}; {args.threads} threads")
    for r in results:
        print(f"{r['input']:>7s} batch {r['batch']}: fp32 {r['fp32_ms']:7.1f} ms/step  "
              f"fp32 channels-last {r['fp32_channels_last_ms']:7.1f} ms ({r['fp32_channels_last_speedup']:.2f}x)  "
              f"bf16 channels-last {r['bf16_channels_last_ms']:7.1f} ms ({r['bf16_channels_last_speedup']:.2f}x)")


if __name__ == "__main__":
    main()
