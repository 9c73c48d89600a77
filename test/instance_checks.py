"""Shared by the instance tests: comparison of instance lists after a trip through an InstanceArray (every
field of `InstanceResult`, the float32 ones to float32, the grasp axes through the quaternion), and a
test model file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from refine_perception.instances.result import InstanceResult
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.weights import save_spatial_embeddings


def by_score(results: Sequence[InstanceResult]) -> list[InstanceResult]:
    """The order an InstanceArray keeps: decreasing score, ties as given."""
    return sorted(results, key=lambda r: -r.score)


def assert_same_results(got: Sequence[InstanceResult], expected: Sequence[InstanceResult]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert np.array_equal(g.mask, e.mask) and g.mask.dtype == bool
        assert g.score == np.float32(e.score)
        assert (g.class_id, g.class_name) == (e.class_id, e.class_name)
        assert g.box == e.box
        assert (g.grasp is None) == (e.grasp is None)
        if e.grasp is not None:
            assert g.grasp.position == e.grasp.position
            np.testing.assert_allclose(g.grasp.closing, e.grasp.closing, atol=1e-12)
            np.testing.assert_allclose(g.grasp.approach, e.grasp.approach, atol=1e-12)
            assert (g.grasp.width, g.grasp.score) == (np.float32(e.grasp.width), np.float32(e.grasp.score))


def write_banded_model(path: Path, input_size: tuple[int, int] = (120, 160)) -> Path:
    """An untrained SpatialEmbeddings file whose output still gives instances to publish, as the lane tests'
    tiny CLRNet has confident priors: every pixel a confident seed (0.95) and a kernel wide along x and
    narrow along y, so clustering cuts each image into horizontal bands (elongated: they get grasps)
    whose exact rows follow the image through the random weights."""
    torch.manual_seed(0)
    model = SpatialEmbeddingNet(1, 2, 0.25, input_size=input_size)
    with torch.no_grad():
        model.seed_decoder.output.weight.mul_(0.1)
        model.seed_decoder.output.bias.fill_(3.0)
        model.embedding_decoder.output.bias[2:].copy_(torch.tensor([0.0, 0.45]))
    save_spatial_embeddings(path, model.eval(), {"training": "none: a test model"})
    return path
