"""How well a discriminative model's embeddings separate the sticks, measured against the ground truth (no
clustering involved): per stick, the share of its pixels within delta_dist of its mean embedding and their
median distance to it (the pull), and the distance from its mean to the nearest other stick's mean (the
push; the loss asks for 2 delta_d, the mean shift needs more than delta_d). Scenes default to seed 3 from
index 1000, which no training or validation split renders.

    ./dev run python -m benchmarks.embedding_separation --weights FILE [--scenes 30] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from refine_perception.data.synthetic.sticks import sticks_scene
from refine_perception.instances.decoders import MeanShiftDecoder
from refine_perception.instances.predict import InstancePredictor
from refine_perception.models.discriminative.output import split_output

MIN_PIXELS = 10  # sticks with fewer visible pixels at the network's resolution are left out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="discriminative weights")
    parser.add_argument("--scenes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--first", type=int, default=1000, help="index of the first scene of the seed's stream")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    predictor, _ = InstancePredictor.from_file(args.weights)
    if not isinstance(predictor.decoder, MeanShiftDecoder):
        raise SystemExit(f"{args.weights}: not a discriminative-loss model")
    radius = predictor.decoder.delta_dist
    height, width = predictor.input_size
    within, spread, nearest = [], [], []
    for index in range(args.first, args.first + args.scenes):
        scene = sticks_scene(args.seed, index)
        raw = predictor.network(predictor.inputs([scene.image]))
        embedding = split_output(torch.from_numpy(raw), predictor.decoder.embedding_dim)[0][0].numpy()
        ids = cv2.resize(scene.instance_map + 1, (width, height), interpolation=cv2.INTER_NEAREST)
        means = []
        for stick in np.unique(ids[ids > 0]):
            points = embedding[:, ids == stick]
            if points.shape[1] < MIN_PIXELS:
                continue
            mean = points.mean(axis=1)
            distance = np.linalg.norm(points - mean[:, None], axis=0)
            within.append(float((distance < radius).mean()))
            spread.append(float(np.median(distance)))
            means.append(mean)
        if len(means) > 1:
            gaps = np.linalg.norm(np.array(means)[:, None] - np.array(means)[None], axis=-1)
            np.fill_diagonal(gaps, np.inf)
            nearest += gaps.min(axis=1).tolist()
    figures = {
        "weights": str(args.weights), "scenes": args.scenes, "sticks": len(within), "delta_dist": radius,
        "share_within_delta_dist_median": round(float(np.median(within)), 3),
        "share_within_delta_dist_p10": round(float(np.percentile(within, 10)), 3),
        "spread_median": round(float(np.median(spread)), 3), "spread_p90": round(float(np.percentile(spread, 90)), 3),
        "nearest_mean_median": round(float(np.median(nearest)), 3),
        "nearest_mean_p10": round(float(np.percentile(nearest, 10)), 3),
        "nearest_mean_below_delta_dist": round(float(np.mean(np.array(nearest) < radius)), 3),
        "nearest_mean_below_2_delta_dist": round(float(np.mean(np.array(nearest) < 2 * radius)), 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    f = figures
    print(f"{f['sticks']} sticks of {f['scenes']} scenes (seed {args.seed} from {args.first}), {args.weights}")
    print(f"pull: share of a stick's pixels within {radius:g} of its mean: median {f['share_within_delta_dist_median']}, "
          f"p10 {f['share_within_delta_dist_p10']}; median distance to it {f['spread_median']} (p90 {f['spread_p90']})")
    print(f"push: nearest other stick's mean: median {f['nearest_mean_median']}, p10 {f['nearest_mean_p10']}; "
          f"closer than {radius:g}: {f['nearest_mean_below_delta_dist']}, closer than {2 * radius:g}: "
          f"{f['nearest_mean_below_2_delta_dist']}")


if __name__ == "__main__":
    main()
