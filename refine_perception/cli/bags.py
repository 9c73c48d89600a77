"""`refine-perception bag`: write lane bags from our datasets and the synthetic drive, sticks bags from the
pick-and-place scenes, street bags from the street scenes or a Cityscapes-layout folder, and list a bag."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from refine_perception.cli import CliError

DETECTOR_PARAMS = "lane_detector.yaml"  # in a drive's bag folder: the detector parameters of its camera
DEFAULT_SOURCE = "synthetic:drive?frames=40"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bag", help="write lane, sticks or street bags, list a bag",
                       description="rosbag2 bags (MCAP or sqlite3) readable by ros2 bag, rosbags, mcap and Foxglove.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    write = verbs.add_parser(
        "write",
        help="a lane bag (camera images, CameraInfo, /ground_truth/lanes and /ground_truth/tags), a sticks bag "
        "(camera images, CameraInfo, depth, /ground_truth/instances) or a street bag (camera images, CameraInfo, "
        "/ground_truth/labels and /ground_truth/instance_ids)",
        description="From the synthetic drive (default), a CULane / TuSimple dataset on disk, the pick-and-place "
        "sticks scenes, the street scenes or a Cityscapes-layout folder (--cityscapes). A drive's bag also gets "
        f"{DETECTOR_PARAMS}, the lane_detector parameters of its camera mounting, which `refine-perception replay` "
        "uses.",
    )
    write.add_argument("out", type=Path, help="bag folder to create")
    write.add_argument("--source", default=None,
                       help=f"synthetic:drive?seed=..&frames=..&fps=.. (default {DEFAULT_SOURCE}), "
                       "synthetic:sticks?seed=..&frames=..&width=..&height=.. (defaults 2, 20, 640, 480) or "
                       "synthetic:street?seed=..&frames=..&width=..&height=.. (defaults 2, 20, 1024, 512)")
    write.add_argument("--culane", type=Path, help="CULane root (instead of --source)")
    write.add_argument("--list", default="list/test.txt", help="CULane list under the root (default list/test.txt)")
    write.add_argument("--tusimple", type=Path, help="TuSimple root (instead of --source)")
    write.add_argument("--cityscapes", type=Path, help="Cityscapes-layout root, ours or the real one (instead of "
                       "--source): a street bag of --split")
    write.add_argument("--split", default="val", help="Cityscapes split folder (default val)")
    write.add_argument("--labels", default="test_label.json", help="TuSimple label file under the root")
    write.add_argument("--limit", type=int, default=0, help="at most this many dataset frames (0: all)")
    write.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    write.add_argument("--transport", choices=("compressed", "raw"), default="compressed",
                       help="CompressedImage (JPEG) or Image (bgr8)")
    write.add_argument("--fps", type=float, default=10.0, help="frame rate of the stamps (default 10)")
    write.add_argument("--force", action="store_true", help="replace an existing bag")
    write.set_defaults(func=write_bag)
    info = verbs.add_parser("info", help="topics, types and message counts of a bag, and any damage (exit status 1)")
    info.add_argument("bag", type=Path)
    info.set_defaults(func=bag_info)


def write_bag(args: argparse.Namespace) -> int:
    import yaml

    from refine_perception.bags.lane_bags import dataset_frames, drive_frames, drive_mount_params, write_lane_bag
    from refine_perception.training.config import DatasetConfig
    from refine_perception.training.lane_data import LaneSource

    started = time.perf_counter()
    given = [name for name, value in (("--source", args.source), ("--culane", args.culane),
                                      ("--tusimple", args.tusimple), ("--cityscapes", args.cityscapes)) if value]
    if len(given) > 1:
        raise CliError(f"give one source, not {' and '.join(given)}")
    args.source = args.source or ("" if given else DEFAULT_SOURCE)
    if args.source.startswith("synthetic:sticks"):
        return _write_sticks_bag(args, started)
    if args.source.startswith("synthetic:street") or args.cityscapes:
        return _write_street_bag(args, started)
    if args.culane or args.tusimple:
        config = (DatasetConfig(kind="culane", root=str(args.culane), list_file=args.list, limit=args.limit)
                  if args.culane else
                  DatasetConfig(kind="tusimple", root=str(args.tusimple), label_files=(args.labels,), limit=args.limit))
        try:
            source = LaneSource(config)
        except (OSError, ValueError) as error:
            raise CliError(str(error)) from None
        frames = dataset_frames(source[k] for k in range(len(source)))
    else:
        frames = drive_frames(args.source)
    try:
        count = write_lane_bag(args.out, frames, storage=args.storage, transport=args.transport, fps=args.fps,
                               overwrite=args.force)
    except (FileExistsError, ValueError) as error:
        raise CliError(str(error)) from None
    if not (args.culane or args.tusimple):
        params = {"/**/lane_detector": {"ros__parameters": drive_mount_params(args.source)}}
        (args.out / DETECTOR_PARAMS).write_text(yaml.safe_dump(params))
    return _written(args, count, started)


def _write_sticks_bag(args: argparse.Namespace, started: float) -> int:
    from refine_perception.bags.instance_bags import write_instance_bag
    from refine_perception.core.frame_sources import SourceError, spec_options
    from refine_perception.data.synthetic.sticks import sticks_scenes

    try:
        o = spec_options(args.source, {"seed": 2, "frames": 20, "width": 640, "height": 480})
        if o["frames"] < 1 or o["width"] < 32 or o["height"] < 32:
            raise SourceError(f"{args.source}: needs frames >= 1 and an image of at least 32x32")
        count = write_instance_bag(args.out, sticks_scenes(o["seed"], o["frames"], o["width"], o["height"]),
                                   storage=args.storage, transport=args.transport, fps=args.fps, overwrite=args.force)
    except (SourceError, FileExistsError, ValueError) as error:
        raise CliError(str(error)) from None
    return _written(args, count, started)


def _write_street_bag(args: argparse.Namespace, started: float) -> int:
    import shutil

    import numpy as np

    from refine_perception.bags.street_bags import cityscapes_samples, write_street_bag
    from refine_perception.core.frame_sources import SourceError, spec_options
    from refine_perception.data.formats.lanes import AnnotationError
    from refine_perception.data.synthetic.street import render_street

    existed = args.out.exists()
    try:
        if args.cityscapes:
            samples = cityscapes_samples(args.cityscapes, args.split, args.limit)
        else:
            o = spec_options(args.source, {"seed": 2, "frames": 20, "width": 1024, "height": 512})
            if o["frames"] < 1 or o["width"] < 32 or o["height"] < 32:
                raise SourceError(f"{args.source}: needs frames >= 1 and an image of at least 32x32")
            samples = (render_street(np.random.SeedSequence([o["seed"], k]), o["width"], o["height"])
                       for k in range(o["frames"]))
        count = write_street_bag(args.out, samples, storage=args.storage, transport=args.transport, fps=args.fps,
                                 overwrite=args.force)
    except (SourceError, FileExistsError, FileNotFoundError, AnnotationError, ValueError) as error:
        if not existed and args.out.exists() and not isinstance(error, FileExistsError):
            shutil.rmtree(args.out)  # no half-written bag left behind
        raise CliError(str(error)) from None
    return _written(args, count, started)


def _written(args: argparse.Namespace, count: int, started: float) -> int:
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {count} frames to {args.out} ({args.storage}, {args.transport}, {size / 1e6:.1f} MB) "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def bag_info(args: argparse.Namespace) -> int:
    from refine_perception.bags.reader import BagError, BagReader

    try:
        reader = BagReader(args.bag)
        counts: Counter[tuple[str, str]] = Counter()
        first = last = None
        for message in reader.messages():
            counts[(message.topic, message.msgtype)] += 1
            first = message.time_ns if first is None else min(first, message.time_ns)
            last = message.time_ns if last is None else max(last, message.time_ns)
    except BagError as error:
        raise CliError(str(error)) from None
    span = 0.0 if first is None else (last - first) / 1e9
    print(f"{args.bag}: {sum(counts.values())} messages over {span:.2f} s")
    for (topic, msgtype), n in sorted(counts.items()):
        print(f"  {topic:40s} {msgtype:36s} {n:6d}")
    for error in reader.errors:  # each names the file, where and what was lost
        print(f"  damage: {error}")
    return 1 if reader.errors else 0
