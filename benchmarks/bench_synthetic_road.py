"""Time the synthetic road-scene dataset writer: N lane images rendered and written to a temporary
directory with W worker processes, and the time 10 000 images would take at that rate.

    ./dev run python -m benchmarks.bench_synthetic_road [--images N] [--workers W]
                                                        [--formats culane tusimple] [--json]

The default writes the CULane layout only (1640x590 JPEG, .lines.txt, segmentation label, sidecar),
which is what the "10 000 lane images at 1640x590" target measures; add tusimple to also render the
1280x720 TuSimple variant of every scene.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from refine_perception.core.cpu import describe
from refine_perception.data.synthetic.road_dataset import FORMATS, generate_lane_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=["culane"])
    parser.add_argument("--json", action="store_true", help="print one json object instead of text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        generate_lane_dataset(out_dir, args.images, args.seed, "train", args.workers, args.formats, progress=False)
        seconds = time.perf_counter() - start
    result = {
        "cpu": describe(),
        "images": args.images,
        "workers": args.workers,
        "formats": args.formats,
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 2),
        "images_per_second": round(args.images / seconds, 2),
        "projected_seconds_for_10000": round(10000 * seconds / args.images, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CPU: {result['cpu']}")
        print(
            f"{args.images} images ({'+'.join(args.formats)}) with {args.workers} workers: {seconds:.1f} s, "
            f"{result['images_per_second']} images/s; 10 000 images: {result['projected_seconds_for_10000']} s"
        )


if __name__ == "__main__":
    main()
