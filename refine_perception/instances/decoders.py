"""The per-kind part of the instance predictor: a batch of raw network outputs in, each image's instances at
the network's resolution out. Everything around it (resizing, running the network, full-resolution masks
and boxes) is the same for every kind, so InstancePredictor holds one of these and nothing else differs.

- SpatialEmbeddings: the seed clustering of Neven et al. (2019) on offsets, sigma and seed maps.
- Discriminative loss: the fast mean shift of De Brabandere et al. (2017), class by class (MeanShiftDecoder).

The distances of the mean shift come from the model file, not from the node: they belong to the embedding
space the loss shaped. Bandwidth and threshold are both delta_dist (models/discriminative/clustering.py
gives why, with the loss's margins; the authors' code does the same). The node's other knobs (min_pixels,
max_instances, max_seeds) apply to both kinds; seed_threshold only to SpatialEmbeddings, which has seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from refine_perception.models.discriminative import weights as discriminative_weights
from refine_perception.models.discriminative.clustering import (
    MeanShiftClusters,
    MeanShiftSettings,
    cluster_embeddings,
    instance_scores,
)
from refine_perception.models.discriminative.output import split_output as split_discriminative
from refine_perception.models.spatial_embeddings import weights as spatial_weights
from refine_perception.models.spatial_embeddings.clustering import Clusters, ClusterSettings, cluster
from refine_perception.models.spatial_embeddings.embedding import Embeddings, split_output


class InstanceDecoder(Protocol):
    """Raw outputs (B, C, H, W) float32 to each image's Clusters, under the node's `settings`."""

    name: ClassVar[str]  # for reports

    def __call__(self, raw: np.ndarray, settings: ClusterSettings) -> list[Clusters]: ...


@dataclass(frozen=True)
class SeedDecoder:
    """SpatialEmbeddings: offsets + sigma + one seed map per class."""

    name: ClassVar[str] = "SpatialEmbeddings"
    n_sigma: int
    pixels_per_unit: float

    def __call__(self, raw: np.ndarray, settings: ClusterSettings) -> list[Clusters]:
        embeddings = split_output(torch.from_numpy(raw), self.n_sigma, self.pixels_per_unit)
        return [cluster(Embeddings(*(t[k:k + 1] for t in embeddings)), settings) for k in range(raw.shape[0])]


@dataclass(frozen=True)
class MeanShiftDecoder:
    """Discriminative loss: an embedding and semantic logits (background first). The logits' argmax says which
    pixels are foreground and of which class; each class's foreground embeddings are grouped by the fast
    mean shift, and an instance scores by its class probability, size and tightness (instance_scores)."""

    name: ClassVar[str] = "discriminative"
    embedding_dim: int
    delta_dist: float

    def __call__(self, raw: np.ndarray, settings: ClusterSettings) -> list[Clusters]:
        embedding, logits = split_discriminative(torch.from_numpy(raw), self.embedding_dim)
        probabilities = torch.softmax(logits, dim=1).numpy()
        semantic = probabilities.argmax(axis=1)
        shift = MeanShiftSettings(bandwidth=self.delta_dist, threshold=self.delta_dist, min_pixels=settings.min_pixels,
                                  max_instances=settings.max_instances, max_seeds=settings.max_seeds)
        return [self._image(embedding[k].numpy(), semantic[k], probabilities[k], shift) for k in range(raw.shape[0])]

    def cluster(self, embedding: np.ndarray, foreground: np.ndarray, settings: MeanShiftSettings) -> MeanShiftClusters:
        """One class's instances among its `foreground` pixels (the clustering benchmark swaps in others)."""
        return cluster_embeddings(embedding, foreground, settings)

    def _image(self, embedding: np.ndarray, semantic: np.ndarray, probabilities: np.ndarray,
               settings: MeanShiftSettings) -> Clusters:
        """One image: class by class, instances numbered on from those of the classes before."""
        instance_map = np.zeros(semantic.shape, np.int32)
        scores: list[np.ndarray] = []
        class_ids: list[np.ndarray] = []
        found = 0
        for label in range(1, probabilities.shape[0]):
            if found >= settings.max_instances:
                break
            clusters = self.cluster(embedding, semantic == label,
                                    replace(settings, max_instances=settings.max_instances - found))
            members = clusters.instance_map > 0
            instance_map[members] = clusters.instance_map[members] + found
            scores.append(instance_scores(embedding, clusters.instance_map, probabilities[label], self.delta_dist))
            class_ids.append(np.full(len(clusters.sizes), label - 1, np.int64))
            found += len(clusters.sizes)
        return Clusters(instance_map, np.concatenate([np.zeros(0), *scores]).astype(np.float32),
                        np.concatenate([np.zeros(0, np.int64), *class_ids]))


FORMATS = (spatial_weights.FORMAT, discriminative_weights.FORMAT)


def decoder_of(header: Mapping[str, Any]) -> InstanceDecoder:
    """The decoder for a model of the file header `header` (format and architecture)."""
    if header["format"] == discriminative_weights.FORMAT:
        return MeanShiftDecoder(int(header["embedding_dim"]), float(header["delta_dist"]))
    if header["format"] == spatial_weights.FORMAT:
        return SeedDecoder(int(header["n_sigma"]), float(header["pixels_per_unit"]))
    raise ValueError(f"not an instance model format: {header['format']!r}; known: {list(FORMATS)}")
