"""Seed clustering of SpatialEmbeddings (Neven et al., CVPR 2019, §2.5), one image at a time.

Only pixels whose seed probability passes `foreground_threshold` take part. Repeatedly, the
unclustered pixel with the highest seed probability becomes a centre: its embedding and its own sigma
define a Gaussian, and every foreground pixel with phi > 0.5 forms the proposal. Its unclustered
pixels become an instance when there are at least `min_pixels` of them and they are most of the
proposal (otherwise the seed is a second one of an instance already found); either way its pixels
leave the pool. It stops when the best seed is below `seed_threshold`, fewer than `min_pixels` pixels
remain, `max_instances` are found or `max_seeds` seeds were tried. Each step is one vectorised pass
over the foreground pixels, so the cost is (seeds tried) x (foreground pixels), whatever the size of
the background.

Where proposals overlap, a pixel keeps the instance of the stronger seed that claimed it first, so the
result is one label map (the paper lets the later proposal overwrite). With several classes each seed
channel is clustered on its own, in class order, and a pixel already labelled keeps its label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from refine_perception.models.spatial_embeddings.embedding import Embeddings, kernel_distance, kernel_scale

LOG_2 = math.log(2.0)


@dataclass(frozen=True)
class ClusterSettings:
    """Thresholds; pixel counts are at the network's output resolution. `max_seeds` (per class) bounds
    the work a poorly trained model can cause, whose confident seeds each cover only a few pixels:
    every seed tried costs one pass over the foreground."""

    seed_threshold: float = 0.9
    foreground_threshold: float = 0.5
    min_pixels: int = 16
    max_instances: int = 64
    max_seeds: int = 256

    def __post_init__(self) -> None:
        if not (0 <= self.foreground_threshold <= 1 and 0 <= self.seed_threshold <= 1):
            raise ValueError(f"thresholds are probabilities in [0, 1], got seed {self.seed_threshold} and "
                             f"foreground {self.foreground_threshold}")
        if self.min_pixels < 1 or self.max_instances < 0 or self.max_seeds < 0:
            raise ValueError(f"need min_pixels >= 1 and max_instances, max_seeds >= 0, got {self.min_pixels}, "
                             f"{self.max_instances}, {self.max_seeds}")


@dataclass(frozen=True)
class Clusters:
    """An image's instances: `instance_map` (H, W) int32, 0 background and k for the k-th instance;
    per instance its seed probability (`scores`, float32) and class index (`class_ids`, int64)."""

    instance_map: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


def cluster(embeddings: Embeddings, settings: ClusterSettings = ClusterSettings()) -> Clusters:
    """Instances of one image from its embeddings (batch dimension 1, any device)."""
    if embeddings.position.ndim != 4 or embeddings.position.shape[0] != 1:
        raise ValueError(f"cluster one image at a time, got positions {tuple(embeddings.position.shape)}")
    height, width = embeddings.position.shape[2:]
    labels = torch.zeros(height * width, dtype=torch.int32, device=embeddings.position.device)
    scores: list[float] = []
    class_ids: list[int] = []
    position = embeddings.position[0].flatten(1)
    sigma = embeddings.sigma[0].flatten(1)
    for class_id, seed_map in enumerate(embeddings.seed[0].flatten(1)):
        foreground = torch.nonzero((seed_map > settings.foreground_threshold) & (labels == 0)).squeeze(1)
        for pixels, score in _cluster_foreground(position[:, foreground], sigma[:, foreground],
                                                 seed_map[foreground], settings,
                                                 settings.max_instances - len(scores)):
            labels[foreground[pixels]] = len(scores) + 1
            scores.append(score)
            class_ids.append(class_id)
    return Clusters(labels.view(height, width).cpu().numpy(), np.asarray(scores, np.float32),
                    np.asarray(class_ids, np.int64))


def _cluster_foreground(
    position: torch.Tensor, sigma: torch.Tensor, seed: torch.Tensor, settings: ClusterSettings, limit: int
) -> list[tuple[torch.Tensor, float]]:
    """Greedy clustering of F foreground pixels ((2, F) positions, (n_sigma, F) sigma, (F,) seeds):
    each instance's pixel indices (into F, disjoint) and seed score, strongest first."""
    found: list[tuple[torch.Tensor, float]] = []
    candidates = seed.clone()  # seed probability while unclustered, -1 once clustered
    remaining = seed.shape[0]
    for _ in range(settings.max_seeds):
        if len(found) >= limit or remaining < settings.min_pixels:
            break
        score, index = torch.max(candidates, dim=0)
        if float(score) < settings.seed_threshold:
            break
        scale = kernel_scale(sigma[:, index, None])
        proposal = kernel_distance(position, position[:, index, None], scale) < LOG_2  # phi > 0.5
        fresh = proposal & (candidates >= 0)
        fresh_count = int(fresh.sum())
        if fresh_count >= settings.min_pixels and 2 * fresh_count > int(proposal.sum()):
            found.append((torch.nonzero(fresh).squeeze(1), float(score)))
        remaining -= fresh_count
        candidates.masked_fill_(proposal, -1.0)
    return found
