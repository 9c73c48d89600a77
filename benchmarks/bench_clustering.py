"""Clustering of discriminative embeddings: our fast mean shift against scikit-learn's MeanShift and the
SpatialEmbeddings seed clustering, on the same network outputs of held-out sticks scenes.

The network runs once per frame (torch eager); every method then clusters the same embeddings, with the
same foreground (the semantic head's argmax), the same instance score (mean class probability) and the
same full-resolution masks, so the mask AP differs only by the clustering. Methods:
  - fast mean shift (ours, the node's): bandwidth = threshold = delta_dist;
  - fast mean shift, threshold delta_v: the paper's wording, for comparison;
  - sklearn MeanShift: fixed bandwidth delta_dist, bin_seeding=True, every foreground pixel labelled;
  - seed clustering (SpatialEmbeddings' greedy loop) on the embeddings: the most confident unclustered
    pixel is the seed, a fixed isotropic Gaussian with phi > 0.5 inside delta_dist claims the proposal.
Time is per frame of the decoding alone (softmax, clustering, scores), median over frames.

    ./dev run python -m benchmarks.bench_clustering [--weights W] [--frames 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import MeanShift

from refine_perception.core.cpu import describe
from refine_perception.data.synthetic.sticks import sticks_scenes
from refine_perception.evaluation.instances import score_instance_frames
from refine_perception.instances.decoders import MeanShiftDecoder
from refine_perception.instances.pipeline import default_instance_model_path
from refine_perception.instances.predict import InstancePredictor
from refine_perception.instances.sticks_truth import scene_truth
from refine_perception.models.discriminative.clustering import MeanShiftClusters, MeanShiftSettings
from refine_perception.models.spatial_embeddings.clustering import ClusterSettings, cluster
from refine_perception.models.spatial_embeddings.embedding import SIGMA_SCALE, Embeddings


def _clusters_from_labels(labels: np.ndarray, foreground: np.ndarray, min_pixels: int) -> MeanShiftClusters:
    """sklearn's labels (P,) of the foreground pixels as MeanShiftClusters, instances under `min_pixels` dropped."""
    instance_map = np.zeros(foreground.size, np.int32)
    pixels = np.flatnonzero(foreground)
    sizes: list[int] = []
    for value, count in zip(*np.unique(labels, return_counts=True)):
        if count >= min_pixels:
            sizes.append(int(count))
            instance_map[pixels[labels == value]] = len(sizes)
    return MeanShiftClusters(instance_map.reshape(foreground.shape), np.asarray(sizes, np.int64))


@dataclass(frozen=True)
class ThresholdDeltaV(MeanShiftDecoder):
    delta_var: float = 0.5

    def cluster(self, embedding: np.ndarray, foreground: np.ndarray, settings: MeanShiftSettings) -> MeanShiftClusters:
        return super().cluster(embedding, foreground, replace(settings, threshold=self.delta_var))


@dataclass(frozen=True)
class SklearnMeanShift(MeanShiftDecoder):
    def cluster(self, embedding: np.ndarray, foreground: np.ndarray, settings: MeanShiftSettings) -> MeanShiftClusters:
        points = embedding[:, foreground].T
        if points.shape[0] < settings.min_pixels:
            return MeanShiftClusters(np.zeros(foreground.shape, np.int32), np.zeros(0, np.int64))
        labels = MeanShift(bandwidth=settings.bandwidth, bin_seeding=True, cluster_all=True).fit(points).labels_
        return _clusters_from_labels(labels, foreground, settings.min_pixels)


@dataclass(frozen=True)
class SeedClustering(MeanShiftDecoder):
    def cluster(self, embedding: np.ndarray, foreground: np.ndarray, settings: MeanShiftSettings) -> MeanShiftClusters:
        # phi = exp(-scale ||e - c||^2) > 0.5 exactly within `threshold` of the seed's embedding
        raw_sigma = math.log(math.log(2.0) / settings.threshold ** 2) / SIGMA_SCALE
        position = torch.from_numpy(embedding)[None]
        seed = torch.from_numpy(foreground.astype(np.float32))[None, None]
        found = cluster(Embeddings(position, torch.full_like(seed, raw_sigma), seed),
                        ClusterSettings(seed_threshold=0.5, min_pixels=settings.min_pixels,
                                        max_instances=settings.max_instances, max_seeds=settings.max_seeds))
        return MeanShiftClusters(found.instance_map, np.bincount(found.instance_map.ravel())[1:].astype(np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="discriminative weights (default: the shipped model)")
    parser.add_argument("--frames", type=int, default=50, help="held-out scenes (default 50)")
    parser.add_argument("--seed", type=int, default=2, help="scene stream seed (default 2, the held-out one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    weights = args.weights or default_instance_model_path()
    predictor, info = InstancePredictor.from_file(weights)
    base = predictor.decoder
    if not isinstance(base, MeanShiftDecoder):
        raise SystemExit(f"{weights}: not a discriminative-loss model ({base.name})")
    scenes = list(sticks_scenes(args.seed, args.frames))
    truth = [scene_truth(scene) for scene in scenes]
    raw = [predictor.network(predictor.inputs([scene.image])) for scene in scenes]
    delta_var = float(predictor.metadata["delta_var"])
    methods = {
        "fast mean shift (ours)": base,
        "fast mean shift, threshold delta_v": ThresholdDeltaV(base.embedding_dim, base.delta_dist, delta_var),
        "seed clustering (SpatialEmbeddings)": SeedClustering(base.embedding_dim, base.delta_dist),
        "sklearn MeanShift (bin seeding)": SklearnMeanShift(base.embedding_dim, base.delta_dist),
    }
    rows = {}
    for name, decoder in methods.items():
        times, predictions = [], []
        for output, scene in zip(raw, scenes):
            started = time.perf_counter()
            (found,) = decoder(output, predictor.settings)
            times.append(time.perf_counter() - started)
            predictions.append(predictor.results(found, scene.image.shape[:2]))
        scores = score_instance_frames(truth, predictions).to_dict()
        rows[name] = {"ms_per_frame": round(1e3 * float(np.median(times)), 2),
                      "ms_p95": round(1e3 * float(np.percentile(times, 95)), 2),
                      "mask_AP": round(scores["mask_AP"], 4), "mask_AP50": round(scores["mask_AP50"], 4),
                      "instances_per_frame": round(float(np.mean([len(p) for p in predictions])), 2)}
    ours = rows["fast mean shift (ours)"]["ms_per_frame"]
    for row in rows.values():
        row["vs_ours"] = round(row["ms_per_frame"] / ours, 1)
    foreground = [int((output[0, base.embedding_dim:].argmax(axis=0) > 0).sum()) for output in raw]
    figures = {"cpu": describe(), "weights": str(weights), "backend": str(info), "frames": args.frames,
               "seed": args.seed, "foreground_pixels_median": int(np.median(foreground)),
               "sticks_per_frame": round(float(np.mean([len(t) for t in truth])), 2), "methods": rows}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"CPU: {figures['cpu']}")
    print(f"{args.frames} held-out scenes (seed {args.seed}, 640x480), {weights}; median "
          f"{figures['foreground_pixels_median']} foreground pixels at the network's resolution, "
          f"{figures['sticks_per_frame']} sticks per frame")
    print(f"{'method':38s} {'ms/frame':>9s} {'p95':>8s} {'x ours':>7s} {'mask AP':>8s} {'AP50':>7s} {'inst/frame':>10s}")
    for name, row in rows.items():
        print(f"{name:38s} {row['ms_per_frame']:9.2f} {row['ms_p95']:8.2f} {row['vs_ours']:7.1f} "
              f"{row['mask_AP']:8.4f} {row['mask_AP50']:7.4f} {row['instances_per_frame']:10.2f}")


if __name__ == "__main__":
    main()
