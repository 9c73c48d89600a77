"""`refine-perception engines`: prepare inference files ahead of time (on the robot, at install time), so a
node never spends its start-up exporting ONNX, quantising or building a TensorRT engine."""

from __future__ import annotations

import argparse
from pathlib import Path

from refine_perception.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    from refine_perception.runtime import BACKENDS, PRECISIONS

    p = sub.add_parser(
        "engines",
        help="export ONNX, quantise to int8, build TensorRT engines and measure backends, for any model file",
        description="Exports each model to ONNX into the cache the nodes read (keyed by the weights' hash), "
        "writes its int8 version (onnxruntime static quantisation, calibrated on the model's task), with "
        "--tensorrt builds its engines (keyed by the ONNX hash, TensorRT version, GPU and precision) and "
        "with --select measures the backends `auto` chooses between and records the winner for this "
        "machine. Without --model: the shipped default models.",
    )
    p.add_argument("--model", type=Path, action="append", help="model file (repeatable)")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 files")
    p.add_argument("--tensorrt", nargs="*", choices=("fp16", "fp32"), default=None,
                   help="also build TensorRT engines of these precisions (default fp16; needs tensorrt + a GPU)")
    p.add_argument("--select", action="store_true", help="measure the backends and record auto's choice")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="for --select (default auto)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="for --select (default auto)")
    p.add_argument("--threads", type=int, default=0, help="for --select: the node's threads (0: every core)")
    p.add_argument("--int8-weight-bits", type=int, default=0, choices=(0, 7, 8),
                   help="onnxruntime int8 weights: 0 this CPU's (7 without an int8 dot product), 7 or 8")
    p.add_argument("--max-batch", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU when there is one)")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $XDG_CACHE_HOME/refine_perception")
    p.set_defaults(func=run_engines)


def run_engines(args: argparse.Namespace) -> int:
    from refine_perception.models.model_file import ModelFileError
    from refine_perception.runtime import BackendError, RuntimeConfig, UnsupportedCombination
    from refine_perception.runtime.prepare import prepare
    from refine_perception.share import INSTANCE_MODEL, LANE_MODEL, shipped_model

    models = args.model or [path for path in map(shipped_model, (LANE_MODEL, INSTANCE_MODEL)) if path.is_file()]
    tensorrt = () if args.tensorrt is None else (args.tensorrt or ["fp16"])
    try:
        config = RuntimeConfig(args.backend, args.device, args.precision, args.cache_dir, args.threads,
                               max_batch=args.max_batch, int8_weight_bits=args.int8_weight_bits)
        for model in models:
            for line in prepare(model, config, args.int8, tensorrt, args.select):
                print(line, flush=True)
    except (ModelFileError, BackendError, UnsupportedCombination, ValueError) as error:
        raise CliError(str(error)) from None
    return 0
