"""Every kind of network we ship through the shared runtime, one row each: torch eager against onnxruntime
fp32/int8 and OpenVINO fp32/int8, at batch 1 with the same thread count (2: this project's CPUs), medians over
repeated runs in the same process, timed in turns of 3. Without --model the shipped defaults are timed and, for
kinds that ship no model yet, a freshly initialised one at the default input (then only the times mean anything).

    ./dev run python -m benchmarks.bench_networks [--model FILE ...] [--repeat 21] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from refine_perception.core.cpu import describe
from refine_perception.core.stats import interleaved_median_ms
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.weights import save_spatial_embeddings
from refine_perception.runtime import BackendError, RuntimeConfig, UnsupportedCombination, load_model, open_model
from refine_perception.runtime.openvino_backend import available as openvino_available
from refine_perception.share import BOUNDARY_MODELS, INSTANCE_MODEL, LANE_MODEL, STREET_MODEL, shipped_model

VARIANTS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"),
            ("openvino", "int8"))


def measure_file(path: Path, repeat: int, threads: int, cache_dir: Path | None = None) -> dict[str, object]:
    """One row: the model's kind and input, and the median ms of every backend/precision that runs here."""
    model = load_model(path)
    batch = np.random.default_rng(0).random((1, model.kind.input_channels, *model.input_size), dtype=np.float32)
    row: dict[str, object] = {"kind": model.kind.name, "model": path.name, "input": "x".join(map(str, model.input_size)),
                              "params": sum(p.numel() for p in model.module.parameters())}
    runs = {}
    for backend, precision in VARIANTS:
        if backend == "openvino" and not openvino_available():
            continue
        try:
            network = open_model(model, RuntimeConfig(backend, "cpu", precision, cache_dir, threads))
        except (BackendError, UnsupportedCombination) as err:
            row[f"{backend}_{precision}_error"] = str(err)
            continue
        runs[f"{backend}_{precision}_ms"] = lambda network=network: network(batch)
    # in turns: a machine whose speed drifts would otherwise favour whichever ran in a fast spell
    row.update({key: round(ms, 1) for key, ms in interleaved_median_ms(runs, rounds=max(1, repeat // 3)).items()})
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
    """The shipped models (lanes, sticks, street, the sticks boundary refiner), and an untrained
    SpatialEmbeddings network at its default input, the one kind that ships no model."""
    torch.manual_seed(0)
    spatial = folder / "spatial_embeddings_untrained.safetensors"
    save_spatial_embeddings(spatial, SpatialEmbeddingNet().eval())
    return [shipped_model(LANE_MODEL), shipped_model(INSTANCE_MODEL), shipped_model(STREET_MODEL),
            shipped_model(BOUNDARY_MODELS["sticks"]), spatial]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="model file (repeatable)")
    parser.add_argument("--repeat", type=int, default=21, help="timed runs of each (in turns of 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=None, help="derived files (default: the nodes' cache)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.json:
        print(f"CPU: {describe()}; {args.threads} threads, batch 1, median of {3 * max(1, args.repeat // 3)} in turns", flush=True)
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
