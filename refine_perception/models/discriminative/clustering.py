"""The fast mean-shift variant that De Brabandere et al. (2017) use to turn discriminative embeddings
into instances.

Why not full mean shift or DBSCAN: both visit every pixel. Mean shift runs from many seeds, each over
all pixels, and DBSCAN's neighbour queries grow towards N^2 when the clusters are dense, as trained
embeddings are. A trained embedding has one tight cluster per instance, so running mean shift from
one pixel per instance is enough. The loop is:
  1. The start is the first unlabelled foreground pixel in raster order. The choice is deterministic,
     and mean shift moves it to its cluster's mode anyway.
  2. Its embedding moves to the mean of the unlabelled embeddings within `bandwidth` (a flat kernel).
     This repeats until it moves less than `tolerance`, or for at most `max_iterations` steps.
  3. Every unlabelled pixel within `threshold` of that mode forms one instance, and so does the start
     itself, so each try removes at least one pixel. These pixels leave the pool.
  4. An instance of fewer than `min_pixels` pixels is dropped (it stays background).
The loop stops when fewer than `min_pixels` pixels remain (no kept instance could come from them),
when `max_instances` have been found, or after `max_seeds` tries. The last bound caps the cost of a
poorly trained model, whose tries each remove only a few pixels.

Each step is one pass over the remaining pixels. The squared distance is ||x||^2 - 2 x.m + ||m||^2
with ||x||^2 computed once, so the pass is one matrix-vector product. The removed pixels leave the
arrays, so later instances cost less. A trained cluster converges in two steps: the first window
holds the whole cluster, and the second reproduces its mean.

Defaults: bandwidth = threshold = 1.5 = delta_d, the values in the authors' code. (The issue's
wording, a threshold of delta_v, would be too tight.) At the loss's optimum every pixel lies within
delta_v = 0.5 of its centre, and the centres are 2 delta_d = 3 apart. So:
  - A window of 1.5 around a start or a mode holds its whole cluster (diameter at most 1).
  - That window reaches no other instance: those pixels are at least 2 from any pixel of this one and
    2.5 from its centre.
  - 1.5 is half the distance between centres. A pixel within 1.5 of another mode is at least as far
    from its own, so a threshold of 1.5 takes no pixel from the instance it is nearer to.
A threshold of delta_v would only be safe on training data. Held-out pixels that miss delta_v by a
little would be left behind and come out as extra small instances or be lost.

Scores (`instance_scores`). Mask AP ranks the instances of all images by score, so a fragment that scores
as high as a whole object costs precision everywhere. The class probability alone cannot tell them apart:
a fragment's pixels are as surely foreground as any. Two things can: its size, and how tight its
embeddings are. An instance scores its mean class probability times (1 - exp(-pixels / size_scale)) times
max(0, 1 - median distance to its mean / (2 delta_dist)); a cluster whose typical pixel lies as far from
its mean as two instances' centres should lie apart is a mixture, not an instance. On the sticks model's
validation scenes (60 of seed 3) this lifted mask AP from 12.2 to 18.7 and AP50 from 31.8 to 44.7, with
boundary F 0.4 points and mIoU 1.1 points lower (a few instances now fall under the score threshold).
A scale of 100 pixels at the network's resolution was the best of 50, 100 and 200 there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MeanShiftSettings:
    """Distances are in embedding units. Pixel counts are at the embedding's resolution."""

    bandwidth: float = 1.5
    threshold: float = 1.5
    tolerance: float = 1e-4
    max_iterations: int = 100
    min_pixels: int = 16
    max_instances: int = 64
    max_seeds: int = 256

    def __post_init__(self) -> None:
        if self.bandwidth <= 0 or self.threshold <= 0 or self.tolerance < 0:
            raise ValueError(f"need bandwidth, threshold > 0 and tolerance >= 0, got {self.bandwidth}, "
                             f"{self.threshold}, {self.tolerance}")
        if self.max_iterations < 1 or self.min_pixels < 1 or self.max_instances < 0 or self.max_seeds < 0:
            raise ValueError(f"need max_iterations, min_pixels >= 1 and max_instances, max_seeds >= 0, got "
                             f"{self.max_iterations}, {self.min_pixels}, {self.max_instances}, {self.max_seeds}")


@dataclass(frozen=True)
class MeanShiftClusters:
    """One image's instances: `instance_map` (H, W) int32, with 0 for background and k for the k-th
    instance found, and `sizes` (K,) int64, the pixel count of each instance."""

    instance_map: np.ndarray
    sizes: np.ndarray


def cluster_embeddings(
    embeddings: np.ndarray | torch.Tensor,
    foreground: np.ndarray | torch.Tensor,
    settings: MeanShiftSettings = MeanShiftSettings(),
) -> MeanShiftClusters:
    """Instances of one image from its embeddings (D, H, W) and its foreground mask (H, W) bool."""
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to("cpu", torch.float32).numpy()
    if isinstance(foreground, torch.Tensor):
        foreground = foreground.cpu().numpy()
    if embeddings.ndim != 3 or foreground.shape != embeddings.shape[1:] or foreground.dtype != np.bool_:
        raise ValueError(f"expected embeddings (D, H, W) and a bool foreground (H, W), got "
                         f"{embeddings.shape} and {foreground.dtype} {foreground.shape}")
    pixels = np.flatnonzero(foreground)
    points = embeddings.reshape(embeddings.shape[0], -1)[:, pixels].T
    labels, sizes = cluster_points(points, settings)
    instance_map = np.zeros(foreground.size, np.int32)
    instance_map[pixels] = labels
    return MeanShiftClusters(instance_map.reshape(foreground.shape), sizes)


def cluster_points(
    points: np.ndarray, settings: MeanShiftSettings = MeanShiftSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (P,) int32 of P embeddings (P, D): 0 for none, k for the k-th instance found. Also the
    sizes (K,) int64. The order of the points decides which point starts each search."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    labels = np.zeros(points.shape[0], np.int32)
    sizes: list[int] = []
    remaining = np.arange(points.shape[0])  # indices of the unlabelled points, in their original order
    half_squared_norms = 0.5 * np.einsum("ij,ij->i", points, points)
    for _ in range(settings.max_seeds):
        if remaining.shape[0] < settings.min_pixels or len(sizes) >= settings.max_instances:
            break
        mode = _seek_mode(points, half_squared_norms, settings)
        members = _within(points, half_squared_norms, mode, settings.threshold)
        members[0] = True  # the start always leaves the pool, so every try makes progress
        size = int(np.count_nonzero(members))
        if size >= settings.min_pixels:
            labels[remaining[members]] = len(sizes) + 1
            sizes.append(size)
        keep = ~members
        # np.compress copies rows several times faster than boolean indexing, which dominated the cost
        remaining, points, half_squared_norms = (np.compress(keep, values, axis=0)
                                                 for values in (remaining, points, half_squared_norms))
    return labels, np.asarray(sizes, np.int64)


def _seek_mode(points: np.ndarray, half_squared_norms: np.ndarray, settings: MeanShiftSettings) -> np.ndarray:
    """Flat-kernel mean shift from the first point over all the points."""
    mode = points[0]
    for _ in range(settings.max_iterations):
        window = _within(points, half_squared_norms, mode, settings.bandwidth)
        count = np.count_nonzero(window)
        if count == 0:  # only from rounding: the mean of a window always has a member within it
            break
        shifted = (window.astype(np.float32) @ points) / np.float32(count)
        moved = float(np.linalg.norm(shifted - mode))
        mode = shifted
        if moved < settings.tolerance:
            break
    return mode


def _within(points: np.ndarray, half_squared_norms: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Which points lie closer than `radius` to `centre`: ||x - c||^2 < r^2 written as
    x.c - ||x||^2 / 2 > (||c||^2 - r^2) / 2, one matrix-vector product."""
    return points @ centre - half_squared_norms > 0.5 * (float(centre @ centre) - radius * radius)


SIZE_SCALE_PX = 100.0  # pixels at the embedding's resolution; see "Scores" above


def instance_scores(embeddings: np.ndarray, instance_map: np.ndarray, probability: np.ndarray, delta_dist: float,
                    size_scale_px: float = SIZE_SCALE_PX) -> np.ndarray:
    """Scores (K,) of the instances 1..K of `instance_map` (H, W) from the embeddings (D, H, W) and the
    probability (H, W) of their class (see "Scores" above; size_scale_px 0 leaves size out)."""
    count = int(instance_map.max(initial=0))
    pixels = np.flatnonzero(instance_map)
    labels = instance_map.reshape(-1)[pixels] - 1
    order = np.argsort(labels, kind="stable")
    pixels, labels = pixels[order], labels[order]
    points = embeddings.reshape(embeddings.shape[0], -1)[:, pixels].T
    starts = np.searchsorted(labels, np.arange(count + 1))
    scores = np.zeros(count, np.float32)
    for k in range(count):
        members = points[starts[k]:starts[k + 1]]
        if len(members) == 0:
            continue
        spread = float(np.median(np.linalg.norm(members - members.mean(axis=0), axis=1)))
        size = 1.0 - np.exp(-len(members) / size_scale_px) if size_scale_px > 0 else 1.0
        mean_probability = float(probability.reshape(-1)[pixels[starts[k]:starts[k + 1]]].mean())
        scores[k] = mean_probability * size * max(0.0, 1.0 - spread / (2.0 * delta_dist))
    return scores
