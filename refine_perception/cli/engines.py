"""`refine-perception engines`: prepare inference files ahead of time (on the robot, at install time), so a
node never spends its start-up exporting ONNX or building a TensorRT engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from refine_perception.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "engines",
        help="export ONNX and build TensorRT engines for lane models ahead of time",
        description="Exports each model to ONNX into the cache the nodes read (keyed by the weights' hash) "
        "and, with --tensorrt, builds its engines (keyed by the ONNX hash, TensorRT version, GPU and "
        "precision). Without --model: the shipped default lane model.",
    )
    p.add_argument("--model", type=Path, action="append", help="weights file (repeatable)")
    p.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs tensorrt + a GPU)")
    p.add_argument("--precision", nargs="+", default=["fp16"], choices=("fp16", "fp32"))
    p.add_argument("--max-batch", type=int, default=1)
    p.add_argument("--device", default=None, help="cuda:N for the engines (default: the current GPU)")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $XDG_CACHE_HOME/refine_perception")
    p.set_defaults(func=run_engines)


def run_engines(args: argparse.Namespace) -> int:
    from refine_perception.lanes.backends import BackendError, build_engines, onnx_file, tensorrt_available
    from refine_perception.models.clrnet.weights import ModelFileError
    from refine_perception.share import LANE_MODEL, shipped_model

    models = args.model or [shipped_model(LANE_MODEL)]
    try:
        for model in models:
            path, digest, _ = onnx_file(model, args.cache_dir)
            print(f"{model}: ONNX {path} (sha256 {digest[:16]})")
        if args.tensorrt:
            if not tensorrt_available():
                raise CliError("TensorRT is not installed (pip install tensorrt on a machine with a CUDA GPU)")
            for engine in build_engines(models, args.precision, args.max_batch, args.device, args.cache_dir):
                print(f"engine {engine}")
    except (ModelFileError, BackendError, ValueError) as error:
        raise CliError(str(error)) from None
    return 0
