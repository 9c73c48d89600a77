"""`refine-perception eval`: score predictions in the official formats against ground truth, print a
table, and write the figures as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from refine_perception.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score predictions against ground truth with the official metrics",
        description="Scores predictions in the official dataset formats. Prints a table; --json prints "
        "the figures as JSON instead, --out also writes them to a file.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    culane = kinds.add_parser(
        "culane",
        help="CULane F1@50/F1@75/mF1 per category (official C++ protocol by default)",
        description="Predictions are .lines.txt files laid out like the ground truth under --pred "
        "(the CULane evaluator's layout). Categories come from list/test_split when present.",
    )
    culane.add_argument("--gt", required=True, type=Path, help="CULane root (with list/ and the .lines.txt files)")
    culane.add_argument("--pred", required=True, type=Path, help="root of the predicted .lines.txt files")
    culane.add_argument("--list", default="list/test.txt", help="list file under --gt (default list/test.txt)")
    culane.add_argument("--mode", choices=("official", "python"), default="official",
                        help="official: the C++ tool's protocol (default); python: the re-implementation papers ship")
    culane.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    culane.set_defaults(func=eval_culane)

    tusimple = kinds.add_parser(
        "tusimple",
        help="TuSimple accuracy, FP, FN (LaneEval) and the F1 papers report",
        description="Both files are TuSimple json lines; predictions pair with ground truth by raw_file.",
    )
    tusimple.add_argument("--gt", required=True, type=Path, help="ground-truth json lines (label_data / test_label)")
    tusimple.add_argument("--pred", required=True, type=Path, help="prediction json lines (with run_time)")
    tusimple.set_defaults(func=eval_tusimple)

    for parser in (culane, tusimple):
        parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
        parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")


def _finish(args: argparse.Namespace, table: str, figures: dict[str, Any]) -> int:
    print(json.dumps(figures, indent=2) if args.json else table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def eval_culane(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from refine_perception.data.formats.culane import CULaneDataset, lines_path, read_culane_lines
    from refine_perception.data.formats.lanes import AnnotationError
    from refine_perception.metrics.culane import culane_f1

    try:
        dataset = CULaneDataset(args.gt, args.list)
        gts, preds, categories = [], [], []
        for entry in tqdm(dataset.entries, desc="reading", unit="image", disable=args.json, leave=False):
            gts.append(read_culane_lines(lines_path(args.gt, entry.image)))
            # An image without a prediction file has no predicted lanes, as in the C++ tool.
            preds.append(read_culane_lines(lines_path(args.pred, entry.image), missing_ok=True))
            categories.append(dataset.categories.get(entry.image))
    except (AnnotationError, OSError) as error:
        raise CliError(str(error)) from None
    result = culane_f1(preds, gts, mode=args.mode, categories=categories, workers=args.workers)
    return _finish(args, result.table(), result.to_dict())


def eval_tusimple(args: argparse.Namespace) -> int:
    from refine_perception.data.formats.lanes import AnnotationError
    from refine_perception.data.formats.tusimple import read_tusimple
    from refine_perception.metrics.tusimple import tusimple_eval

    try:
        result = tusimple_eval(read_tusimple(args.pred, prediction=True), read_tusimple(args.gt))
    except (AnnotationError, OSError, ValueError) as error:
        raise CliError(str(error)) from None
    return _finish(args, result.table(), result.to_dict())
