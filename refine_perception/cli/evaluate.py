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
        "(the CULane evaluator's layout). Categories come from list/test_split when present. A missing "
        "prediction file is an error that names how many are missing, unless --missing-as-empty.",
    )
    culane.add_argument("--gt", required=True, type=Path, help="CULane root (with list/ and the .lines.txt files)")
    culane.add_argument("--pred", required=True, type=Path, help="root of the predicted .lines.txt files")
    culane.add_argument("--list", default="list/test.txt", help="list file under --gt (default list/test.txt)")
    culane.add_argument("--mode", choices=("official", "python"), default="official",
                        help="official: the C++ tool's protocol (default); python: the re-implementation papers ship")
    culane.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    culane.add_argument("--missing-as-empty", action="store_true",
                        help="score an image without a prediction file as one without lanes, as the official "
                        "C++ tool does (the count is reported)")
    culane.set_defaults(func=eval_culane)

    tusimple = kinds.add_parser(
        "tusimple",
        help="TuSimple accuracy, FP, FN (LaneEval) and the F1 papers report",
        description="Both files are TuSimple json lines; predictions pair with ground truth by raw_file. "
        "Predictions in the submission format (raw_file, lanes, run_time) are read at the ground truth's "
        "h_samples, as LaneEval does; a prediction that gives other h_samples is an error.",
    )
    tusimple.add_argument("--gt", required=True, type=Path, help="ground-truth json lines (label_data / test_label)")
    tusimple.add_argument("--pred", required=True, type=Path,
                          help="prediction json lines (raw_file, lanes, run_time; h_samples optional)")
    tusimple.set_defaults(func=eval_tusimple)

    coco = kinds.add_parser(
        "coco",
        help="COCO mask AP (pycocotools), or boundary AP with --boundary",
        description="Ground truth is a COCO instances json; predictions a COCO results json "
        "([{image_id, category_id, segmentation, score}], segmentation as RLE or polygons).",
    )
    coco.add_argument("--gt", required=True, type=Path, help="COCO instances json")
    coco.add_argument("--pred", required=True, type=Path, help="COCO results json")
    coco.add_argument("--boundary", action="store_true", help="match on min(mask IoU, Boundary IoU)")
    coco.set_defaults(func=eval_coco)

    cityscapes = kinds.add_parser(
        "cityscapes",
        help="Cityscapes instance AP/AP50 (equal to cityscapesscripts' evaluator)",
        description="Ground truth in Cityscapes layout (gtFine/<split>/<city>/*_gtFine_instanceIds.png); "
        "predictions as the official evaluator reads them: one txt per image under --pred whose name "
        "starts with <city>_<seq>_<frame>, each line '<mask.png> <label id> <score>'.",
    )
    semantic = kinds.add_parser(
        "semantic",
        help="mIoU and per-class IoU (and boundary F with --boundary-px) on Cityscapes label ids",
        description="Ground truth in Cityscapes layout; predictions are labelIds PNGs under --pred whose "
        "names start with <city>_<seq>_<frame>.",
    )
    for parser in (cityscapes, semantic):
        parser.add_argument("--gt", required=True, type=Path, help="Cityscapes root (with gtFine/)")
        parser.add_argument("--split", default="val", help="split under gtFine/ (default val)")
        parser.add_argument("--pred", required=True, type=Path, help="folder of predictions")
    cityscapes.set_defaults(func=eval_cityscapes)
    semantic.add_argument("--boundary-px", type=int, default=0, help="also boundary F at this tolerance in pixels")
    semantic.set_defaults(func=eval_semantic)

    for parser in (culane, tusimple, coco, cityscapes, semantic):
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

    if not args.pred.is_dir():
        state = "is not a folder" if args.pred.exists() else "does not exist"
        raise CliError(f"prediction folder {args.pred} {state}")
    try:
        dataset = CULaneDataset(args.gt, args.list)
        gts, preds, categories = [], [], []
        missing: list[Path] = []
        for entry in tqdm(dataset.entries, desc="reading", unit="image", disable=args.json, leave=False):
            gts.append(read_culane_lines(lines_path(args.gt, entry.image)))
            pred = lines_path(args.pred, entry.image)
            if not pred.is_file():
                missing.append(pred)
            # With --missing-as-empty an absent file means no predicted lanes, as in the C++ tool.
            preds.append(read_culane_lines(pred, missing_ok=True))
            categories.append(dataset.categories.get(entry.image))
    except (AnnotationError, OSError) as error:
        raise CliError(str(error)) from None
    # A half-written or misplaced prediction tree would otherwise score as a plausible low F1.
    share = f"{len(missing)} of {len(gts)}"
    if missing and not args.missing_as_empty:
        shown = ", ".join(str(path.relative_to(args.pred)) for path in missing[:3])
        more = ", ..." if len(missing) > 3 else ""
        raise CliError(f"{share} prediction files are missing under {args.pred} ({shown}{more}); "
                       "pass --missing-as-empty to score them as images without lanes")
    result = culane_f1(preds, gts, mode=args.mode, categories=categories, workers=args.workers)
    table = result.table()
    if missing:
        table += f"\n{share} images have no prediction file (scored as no lanes)"
    return _finish(args, table, {**result.to_dict(), "missing_predictions": len(missing)})


def eval_tusimple(args: argparse.Namespace) -> int:
    from refine_perception.data.formats.lanes import AnnotationError
    from refine_perception.data.formats.tusimple import read_tusimple
    from refine_perception.metrics.tusimple import tusimple_eval

    try:
        result = tusimple_eval(read_tusimple(args.pred, prediction=True), read_tusimple(args.gt))
    except (AnnotationError, OSError, ValueError) as error:
        raise CliError(str(error)) from None
    return _finish(args, result.table(), result.to_dict())


def eval_coco(args: argparse.Namespace) -> int:
    from refine_perception.data.formats.coco import decode_segmentation, load_coco
    from refine_perception.data.formats.lanes import AnnotationError, parse_json, read_text
    from refine_perception.metrics.coco_ap import coco_boundary_ap, coco_mask_ap
    from refine_perception.metrics.instances import GtInstance, PredInstance

    try:
        dataset = load_coco(args.gt)
        results = parse_json(read_text(args.pred), args.pred)
        if not isinstance(results, list):
            raise AnnotationError(args.pred, None, "expected a list of results")
        image_ids = sorted(dataset.images)
        position = {image_id: k for k, image_id in enumerate(image_ids)}
        gt = [
            [GtInstance(a["category_id"], dataset.mask(a), bool(a.get("iscrowd", 0))) for a in dataset.annotations_of(i)]
            for i in image_ids
        ]
        pred: list[list[PredInstance]] = [[] for _ in image_ids]
        for index, result in enumerate(results):
            try:
                image = dataset.images[result["image_id"]]
                segmentation = result["segmentation"]
                if isinstance(segmentation, list):
                    segmentation = decode_segmentation(segmentation, image["height"], image["width"])
                pred[position[result["image_id"]]].append(
                    PredInstance(result["category_id"], segmentation, float(result["score"]))
                )
            except (KeyError, TypeError, ValueError) as error:
                raise AnnotationError(args.pred, None, f"result {index}: {error!r}") from None
        names = {c["id"]: c["name"] for c in dataset.categories.values()}
        result = coco_boundary_ap(gt, pred, class_names=names) if args.boundary else coco_mask_ap(gt, pred, names)
    except (AnnotationError, OSError, ValueError) as error:
        raise CliError(str(error)) from None
    return _finish(args, result.table(), result.to_dict())


def _cityscapes_pairs(args: argparse.Namespace, suffix: str) -> list[tuple[Any, Path]]:
    """Each ground-truth sample of the split with its prediction file (by the official naming rule)."""
    from refine_perception.data.formats.cityscapes import find_samples

    samples = find_samples(args.gt, args.split)
    if not samples:
        raise CliError(f"no ground truth under {args.gt}/gtFine/{args.split}")
    predictions = sorted(args.pred.rglob(f"*{suffix}"))
    pairs = []
    for sample in samples:
        stem = "_".join(sample.label_ids.name.split("_")[:3])
        found = [p for p in predictions if p.name.startswith(stem)]
        if len(found) != 1:
            raise CliError(f"{len(found)} prediction files for {stem} under {args.pred} (need exactly one)")
        pairs.append((sample, found[0]))
    return pairs


def eval_cityscapes(args: argparse.Namespace) -> int:
    from refine_perception.data.formats.cityscapes import read_instance_ids
    from refine_perception.data.formats.lanes import AnnotationError
    from refine_perception.metrics.cityscapes_ap import cityscapes_ap, read_cityscapes_predictions

    try:
        pairs = _cityscapes_pairs(args, ".txt")
        gt = [read_instance_ids(sample.instance_ids) for sample, _ in pairs]
        pred = [read_cityscapes_predictions(path) for _, path in pairs]
        result = cityscapes_ap(gt, pred)
    except (AnnotationError, OSError, ValueError) as error:
        raise CliError(str(error)) from None
    return _finish(args, result.table(), result.to_dict())


def eval_semantic(args: argparse.Namespace) -> int:
    from refine_perception.data.formats.cityscapes import read_label_ids
    from refine_perception.data.formats.lanes import AnnotationError
    from refine_perception.metrics.boundary import SemanticBoundaryF
    from refine_perception.metrics.instances import json_float
    from refine_perception.metrics.semantic import SemanticConfusion

    confusion = SemanticConfusion.cityscapes()
    boundary = (
        SemanticBoundaryF(confusion.num_classes, args.boundary_px, class_names=confusion.class_names)
        if args.boundary_px
        else None
    )
    try:
        for sample, path in _cityscapes_pairs(args, ".png"):
            gt, pred = read_label_ids(sample.label_ids), read_label_ids(path)
            confusion.update(pred, gt)
            if boundary is not None:  # on train ids; void (255) is ignored
                boundary.update(confusion.lookup[pred], confusion.lookup[gt])
    except (AnnotationError, OSError, ValueError) as error:
        raise CliError(str(error)) from None
    figures = confusion.to_dict()
    table = confusion.table()
    if boundary is not None:
        figures["boundary_f"] = {
            "tolerance_px": args.boundary_px,
            "mean": json_float(boundary.mean()),
            "per_class": {n: json_float(v) for n, v in zip(boundary.class_names, boundary.per_class())},
        }
        table += "\n\n" + boundary.table()
    return _finish(args, table, figures)
