"""Every kind of network we ship through the shared runtime, one row each: torch eager against onnxruntime
fp32/int8 and OpenVINO fp32/int8, at batch 1 with the same thread count (2: this project's CPUs), medians over
repeated runs in the same process. Without --model the shipped defaults are timed and, for kinds that ship
no model yet, a freshly initialised one at the default input (then only the times mean anything).

    ./dev run python -m benchmarks.bench_networks [--model FILE ...] [--repeat 20] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from refine_perception.core.cpu import describe
from refine_perception.core.stats import median_ms
from refine_perception.models.discriminative.network import DiscriminativeNet
from refine_perception.models.discriminative.weights import save_discriminative
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.weights import save_spatial_embeddings
from refine_perception.runtime import BackendError, RuntimeConfig, UnsupportedCombination, load_model, open_model
from refine_perception.runtime.openvino_backend import available as openvino_available
from refine_perception.share import INSTANCE_MODEL, LANE_MODEL, shipped_model

VARIANTS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"),
            ("openvino", "int8"))


def measure_file(path: Path, repeat: int, threads: int, cache_dir: Path | None = None) -> dict[str, object]:
    """One row: the model's kind and input, and the median ms of every backend/precision that runs here."""
    model = load_model(path)
    batch = np.random.default_rng(0).random((1, 3, *model.input_size), dtype=np.float32)
    row: dict[str, object] = {"kind": model.kind.name, "model": path.name, "input": "x".join(map(str, model.input_size)),
                              "params": sum(p.numel() for p in model.module.parameters())}
    for backend, precision in VARIANTS:
        if backend == "openvino" and not openvino_available():
            continue
        try:
            network = open_model(model, RuntimeConfig(backend, "cpu", precision, cache_dir, threads))
        except (BackendError, UnsupportedCombination) as err:
            row[f"{backend}_{precision}_error"] = str(err)
            continue
        row[f"{backend}_{precision}_ms"] = round(median_ms(lambda network=network: network(batch), runs=repeat), 1)
    eager = float(row["torch_fp32_ms"])  # type: ignore[arg-type]
    for key in [key for key in row if key.endswith("_ms") and key != "torch_fp32_ms"]:
        row[key.removesuffix("_ms") + "_speedup"] = round(eager / float(row[key]), 2)  # type: ignore[arg-type]
    return row


def print_row(row: dict[str, object]) -> None:
    cells = [f"{row['kind']:18s} {row['input']:>7s} {row['params']:>11,} params  torch eager {row['torch_fp32_ms']:6.1f} ms"]
    for backend, precision in VARIANTS[1:]:
        key = f"{backend}_{precision}"
        if f"{key}_ms" in row:
            cells.append(f"{backend} {precision} {row[f'{key}_ms']:6.1f} ms ({row[f'{key}_speedup']:.2f}x)")
    print("  ".join(cells), flush=True)


def default_models(folder: Path) -> list[Path]:
    """The shipped models, and an untrained network at the default input of each kind that ships none."""
    torch.manual_seed(0)
    instances = shipped_model(INSTANCE_MODEL)
    if not instances.is_file():
        instances = folder / "spatial_embeddings_untrained.safetensors"
        save_spatial_embeddings(instances, SpatialEmbeddingNet().eval())
    discriminative = folder / "discriminative_untrained.safetensors"
    save_discriminative(discriminative, DiscriminativeNet().eval())
    return [shipped_model(LANE_MODEL), instances, discriminative]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="model file (repeatable)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=None, help="derived files (default: the nodes' cache)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.json:
        print(f"CPU: {describe()}; {args.threads} threads, batch 1, median of {args.repeat}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        rows = []
        for path in args.model or default_models(Path(folder)):
            rows.append(measure_file(path, args.repeat, args.threads, args.cache_dir))
            if not args.json:
                print_row(rows[-1])
    if args.json:
        print(json.dumps({"cpu": describe(), "threads": args.threads, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
