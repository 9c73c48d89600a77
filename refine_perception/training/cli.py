"""`refine-train`: train, export and evaluate models offline (no ROS needed).

    refine-train lanes --config config/training/lanes_r18.yaml [--set optim.lr=3e-4 ...] [--resume]
    refine-train lanes --config config/training/lanes_r18_synthetic.yaml [--stage bf16]  (a recipe: all its stages, or one)
    refine-train instances --config config/training/instances_sticks_cpu.yaml [--set ...] [--resume]
    refine-train instances --config config/training/instances_sticks_discriminative_cpu.yaml
    refine-train street --config config/training/street_lrn_cpu.yaml
    refine-train bpr --config config/training/bpr_sticks_cpu.yaml
    torchrun --nproc_per_node 4 -m refine_perception.training lanes --config ...     (DDP)
    refine-train export --weights runs/lanes/final.safetensors --out models/clrnet_r18_synthetic.safetensors
    refine-train evaluate lanes --weights models/clrnet_r18_synthetic.safetensors [--num 2000 --seed 2]
    refine-train evaluate instances --weights runs/instances_sticks_cpu/best.safetensors [--num 200 --seed 2]
    refine-train evaluate street --weights runs/street_lrn_cpu/best.safetensors [--num 500 --seed 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refine_perception.models.backbones.pretrained import PretrainedWeightsError
from refine_perception.models.bpr.refine import INFERENCE_NMS
from refine_perception.models.clrnet.weights import ModelFileError
from refine_perception.training.checkpoint import CheckpointError
from refine_perception.training.config import (
    BPRTrainConfig,
    ConfigError,
    InstancesTrainConfig,
    LanesTrainConfig,
    StreetTrainConfig,
    load_config,
    load_stages,
)

if TYPE_CHECKING:
    from refine_perception.training.trainer import Trainer

log = logging.getLogger("refine_train")


def _train_lanes(args: argparse.Namespace) -> int:
    from refine_perception.training.lane_task import LaneTrainer

    return _train(args, LanesTrainConfig, LaneTrainer)


def _train_instances(args: argparse.Namespace) -> int:
    from refine_perception.training.instance_task import InstanceTrainer

    return _train(args, InstancesTrainConfig, InstanceTrainer)


def _train_street(args: argparse.Namespace) -> int:
    from refine_perception.training.street_task import StreetTrainer

    return _train(args, StreetTrainConfig, StreetTrainer)


def _train_bpr(args: argparse.Namespace) -> int:
    from refine_perception.training.bpr_task import BPRTrainer

    return _train(args, BPRTrainConfig, BPRTrainer)


def _train(args: argparse.Namespace, kind: type[Any], trainer: Callable[..., Trainer]) -> int:
    """Train the config, or the recipe's stages in order (each built once the one before has its weights);
    every stage is validated before the first starts."""
    stages = ([(args.stage, load_config(args.config, args.set, kind, args.stage))] if args.stage
              else load_stages(args.config, args.set, kind))
    for number, (name, config) in enumerate(stages, 1):
        if name:
            log.info("stage %s (%d of %d): %s", name, number, len(stages), config.run.out)
        run = trainer(config, progress=not args.no_progress)
        final = run.fit(resume=args.resume)
        if run.env.main:
            print(f"weights: {final}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from refine_perception.training.export import export_default

    metadata = export_default(args.weights, args.out, args.describe)
    print(json.dumps({k: metadata[k] for k in ("file", "bytes", "sha256", "dtype")}, indent=2))
    return 0


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """How the held-out test runs the network: the shared runtime on the CPU, as the nodes do."""
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"),
                        help="runtime backend on the CPU (default: torch eager, or onnxruntime with --precision)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "int8"),
                        help="precision of the backend (int8: the lanes node's CPU default; default fp32)")
    parser.add_argument("--int8-weight-bits", type=int, choices=(7, 8), default=0,
                        help="onnxruntime int8: quantise the weights to 7 bits (what CPUs without an int8 dot "
                        "product, AVX2 only, run) or 8 (VNNI/AMX); default: this CPU's choice")


def runtime_choice(args: argparse.Namespace) -> tuple[str, str]:
    backend = args.backend or ("onnxruntime" if args.precision else "torch")
    return backend, args.precision or "fp32"


def _evaluate_lanes(args: argparse.Namespace) -> int:
    from refine_perception.training.heldout import evaluate_heldout

    report = evaluate_heldout(args.weights, num=args.num, seed=args.seed, data=args.data, workers=args.workers,
                              batch_size=args.batch_size, progress=not args.no_progress,
                              runtime=runtime_choice(args), int8_weight_bits=args.int8_weight_bits)
    print(json.dumps(report, indent=2) if args.json else report["table"])
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _evaluate_scenes(args: argparse.Namespace) -> int:
    """The held-out test of a task scored on rendered scenes of one size (instances, street)."""
    from refine_perception.training import heldout

    evaluate = {"instances": heldout.evaluate_instances_heldout, "street": heldout.evaluate_street_heldout}[args.task]
    width, _, height = args.size.partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) >= 32 and int(height) >= 32) or args.num < 1:
        raise ConfigError(f"--size must be WxH of at least 32x32 and --num at least 1, got {args.size!r} and {args.num}")
    if not 0 <= args.boundary_nms < 1:
        raise ConfigError(f"--boundary-nms must be in [0, 1), got {args.boundary_nms}")
    if args.figure and not args.boundary_model:
        raise ConfigError("--figure draws what --boundary-model changes: give both")
    report = evaluate(args.weights, num=args.num, seed=args.seed, width=int(width), height=int(height),
                      workers=args.workers, progress=not args.no_progress, runtime=runtime_choice(args),
                      int8_weight_bits=args.int8_weight_bits, boundary_model=args.boundary_model,
                      boundary_nms=args.boundary_nms, figure=args.figure)
    print(json.dumps(report, indent=2) if args.json else report["table"])
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refine-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, func, what in (("lanes", _train_lanes, "CLRNet"),
                             ("instances", _train_instances, "SpatialEmbeddings or the discriminative-loss network"),
                             ("street", _train_street, "the Label Refinement Network with its instance embeddings"),
                             ("bpr", _train_bpr, "the boundary patch refiner on a trained segmenter's masks")):
        train = sub.add_parser(name, help=f"train {what} (single process, or DDP under torchrun)")
        train.add_argument("--config", type=Path, help="YAML training config (default: all defaults)")
        train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override a config entry, e.g. --set optim.lr=3e-4 (repeatable)")
        train.add_argument("--stage", default="", metavar="NAME",
                           help="of a recipe config (one with stages:), train only this stage (default: all, in order)")
        train.add_argument("--resume", action="store_true", help="continue the run in run.out from its last checkpoint "
                           "(of a recipe: every stage, a finished one only rewrites its final weights)")
        train.add_argument("--no-progress", action="store_true", help="no progress bar")
        train.set_defaults(func=func)

    export = sub.add_parser("export", help="write fp16 default weights + metadata from a run's weights")
    export.add_argument("--weights", required=True, type=Path, help="a run's final.safetensors or best.safetensors")
    export.add_argument("--out", required=True, type=Path, help="e.g. models/clrnet_r18_synthetic.safetensors")
    export.add_argument("--describe", type=Path, help="json file of extra metadata (metrics, cost) to include")
    export.set_defaults(func=_export)

    evaluate = sub.add_parser("evaluate", help="score weights on a held-out synthetic test split")
    what = evaluate.add_subparsers(dest="task", required=True, metavar="TASK")
    held = what.add_parser("lanes", help="CULane F1@50/75 per category, TuSimple accuracy, lane type/colour accuracy")
    held.add_argument("--weights", required=True, type=Path)
    held.add_argument("--num", type=int, default=2000, help="test images (default 2000)")
    held.add_argument("--seed", type=int, default=2, help="synthetic stream seed, never used in training (default 2)")
    held.add_argument("--data", type=Path, help="read a split written by `refine-perception data generate lanes` "
                      "instead of rendering it")
    held.add_argument("--workers", type=int, default=2, help="rendering / scoring processes (default 2)")
    held.add_argument("--batch-size", type=int, default=8)
    add_runtime_arguments(held)
    held.add_argument("--json", action="store_true", help="print the report as json")
    held.add_argument("--out", type=Path, help="also write the json report here")
    held.add_argument("--no-progress", action="store_true")
    held.set_defaults(func=_evaluate_lanes)
    for task, help_text, num, size in (
            ("instances", "mask AP, boundary F, mIoU and grasp success on stick scenes", 200, "640x480"),
            ("street", "mIoU and boundary F of every stage, car / person AP on street scenes", 500, "1024x512")):
        scenes = what.add_parser(task, help=help_text)
        scenes.add_argument("--weights", required=True, type=Path)
        scenes.add_argument("--num", type=int, default=num, help=f"test scenes (default {num})")
        scenes.add_argument("--seed", type=int, default=2, help="scene stream seed, never used in training (default 2)")
        scenes.add_argument("--size", default=size, help=f"camera image size WxH (default {size})")
        scenes.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
        scenes.add_argument("--boundary-model", type=Path, help="also score the instances refined by this boundary "
                            "patch refiner (refine-train bpr), on the same frames")
        scenes.add_argument("--boundary-nms", type=float, default=INFERENCE_NMS,
                            help=f"patch proposal NMS of the refinement (default {INFERENCE_NMS}, the nodes')")
        scenes.add_argument("--figure", type=Path, help="with --boundary-model: write a JPEG of unrefined against "
                            "refined masks (zoomed where the refinement changed most) on the first frames it changed")
        add_runtime_arguments(scenes)
        scenes.add_argument("--json", action="store_true", help="print the report as json")
        scenes.add_argument("--out", type=Path, help="also write the json report here")
        scenes.add_argument("--no-progress", action="store_true")
        scenes.set_defaults(func=_evaluate_scenes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, CheckpointError, ModelFileError, PretrainedWeightsError, FileNotFoundError) as err:
        print(f"refine-train: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refine-train: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
