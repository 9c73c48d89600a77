"""`refine-perception data`: generate synthetic datasets, preview them, convert between lane formats."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from refine_perception.cli import CliError

GENERATORS = ("lanes", "street", "sticks")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate, preview and convert datasets",
                       description="Synthetic datasets with exact ground truth, and lane format conversion.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    gen = verbs.add_parser(
        "generate",
        help="render a synthetic dataset to disk",
        description="lanes: road scenes in CULane and TuSimple layouts; street: Cityscapes layout plus COCO "
        "instances; sticks: pick-and-place scenes with masks, stacking order, axes and depth. Image i depends "
        "only on (seed, i): any worker count writes the same files.",
    )
    gen.add_argument("kind", choices=GENERATORS)
    gen.add_argument("--out", type=Path, required=True, help="output folder")
    gen.add_argument("--num", type=int, required=True, help="number of images")
    gen.add_argument("--seed", type=int, default=0, help="seed of the image stream (default 0)")
    gen.add_argument("--split", default="train", help="split name (default train)")
    gen.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    gen.add_argument("--size", default="640x480", metavar="WxH",
                     help="sticks: rendered image size (default 640x480; 320x240 renders ~3x faster)")
    gen.add_argument("--json", action="store_true", help="print the figures as JSON")
    gen.set_defaults(func=generate)

    prev = verbs.add_parser("preview", help="a PNG grid of generated samples with their ground truth drawn")
    prev.add_argument("kind", choices=GENERATORS)
    prev.add_argument("--out", type=Path, required=True, help="PNG file to write")
    prev.add_argument("--seed", type=int, default=0)
    prev.add_argument("--count", type=int, default=6, help="samples in the grid (default 6)")
    prev.set_defaults(func=preview)

    conv = verbs.add_parser(
        "convert",
        help="convert lane annotations between TuSimple and CULane",
        description="tusimple-to-culane writes one .lines.txt per image and list/<split>_gt.txt-style "
        "list; culane-to-tusimple samples each lane at TuSimple's h_samples rows.",
    )
    conv.add_argument("direction", choices=("tusimple-to-culane", "culane-to-tusimple"))
    conv.add_argument("--src", type=Path, required=True,
                      help="TuSimple json lines file, or a CULane root")
    conv.add_argument("--out", type=Path, required=True, help="CULane root, or a TuSimple json lines file")
    conv.add_argument("--list", default="list/test.txt", help="CULane list file under the root (default list/test.txt)")
    conv.set_defaults(func=convert)


def generate(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise CliError("--num must be at least 1")
    started = time.perf_counter()
    if args.kind == "lanes":
        from refine_perception.data.synthetic.road_dataset import generate_lane_dataset

        written = generate_lane_dataset(args.out, args.num, args.seed, args.split, workers=args.workers,
                                        progress=not args.json)
    elif args.kind == "street":
        from refine_perception.data.synthetic.street import generate_street_dataset

        written = generate_street_dataset(args.out, args.num, args.seed, args.split, workers=args.workers,
                                          progress=not args.json)
    else:
        from refine_perception.data.synthetic.sticks import generate_sticks_dataset

        width, _, height = args.size.partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) >= 16 and int(height) >= 16):
            raise CliError(f"--size must be WIDTHxHEIGHT of at least 16x16 pixels, got {args.size!r}")
        written = generate_sticks_dataset(args.out, args.num, args.seed, args.split, workers=args.workers,
                                          progress=not args.json, width=int(width), height=int(height))
    seconds = time.perf_counter() - started
    figures = {"kind": args.kind, "images": args.num, "seconds": round(seconds, 2),
               "images_per_s": round(args.num / seconds, 2), "out": str(args.out), "index": str(written)}
    print(json.dumps(figures) if args.json else
          f"{args.num} {args.kind} images in {seconds:.1f} s ({args.num / seconds:.1f} images/s) -> {args.out}")
    return 0


def preview(args: argparse.Namespace) -> int:
    import cv2

    if args.kind == "lanes":
        from refine_perception.data.synthetic.road import preview as lanes_preview

        image = lanes_preview(args.seed, args.count)
    elif args.kind == "street":
        from refine_perception.data.synthetic.street import preview_street

        image = preview_street(args.seed, args.count)
    else:
        from refine_perception.data.synthetic.sticks import preview_sticks

        image = preview_sticks(args.seed, args.count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), image):
        raise CliError(f"cannot write {args.out}")
    print(f"{args.out}: {image.shape[1]}x{image.shape[0]}")
    return 0


def convert(args: argparse.Namespace) -> int:
    from refine_perception.data.formats.culane import (
        CULaneEntry,
        lines_path,
        read_culane_lines,
        read_culane_list,
        write_culane_lines,
        write_culane_list,
    )
    from refine_perception.data.formats.lanes import AnnotationError
    from refine_perception.data.formats.tusimple import TuSimpleRecord, read_tusimple, write_tusimple

    try:
        if args.direction == "tusimple-to-culane":
            records = read_tusimple(args.src)
            for record in records:
                write_culane_lines(lines_path(args.out, record.raw_file), record.lanes())
            (args.out / args.list).parent.mkdir(parents=True, exist_ok=True)
            write_culane_list(args.out / args.list, [CULaneEntry(r.raw_file) for r in records])
            print(f"{len(records)} images -> {args.out}")
        else:
            entries = read_culane_list(args.src / args.list)
            records = [
                TuSimpleRecord.from_lanes(e.image, read_culane_lines(lines_path(args.src, e.image))) for e in entries
            ]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_tusimple(args.out, records)
            print(f"{len(records)} images -> {args.out}")
    except (AnnotationError, OSError) as error:
        raise CliError(str(error)) from None
    return 0
