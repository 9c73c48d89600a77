"""The discriminative loss against hand-worked values and a plain per-instance loop, and its fast
mean-shift clustering on planted clusters."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from refine_perception.models.discriminative.clustering import (
    MeanShiftSettings,
    cluster_embeddings,
    cluster_points,
    instance_scores,
)
from refine_perception.models.discriminative.loss import DiscriminativeLoss, DiscriminativeSettings

PAPER = DiscriminativeSettings()
NO_REG = DiscriminativeSettings(gamma=0.0)


def row_image(points: list[tuple[float, float]], ids: list[int], classes: list[int] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A 1 x P image whose pixel i embeds at points[i] (2-D), with instance id ids[i] and class classes[i]."""
    embeddings = torch.tensor(points, dtype=torch.float64).T.reshape(1, 2, 1, len(points)).requires_grad_()
    instances = torch.tensor(ids, dtype=torch.int64).reshape(1, 1, -1)
    semantic = None if classes is None else torch.tensor(classes, dtype=torch.int64).reshape(1, 1, -1)
    return embeddings, instances, semantic


def loss_of(points: list[tuple[float, float]], ids: list[int], classes: list[int] | None = None,
            settings: DiscriminativeSettings = PAPER) -> tuple[float, dict[str, float]]:
    total, parts = DiscriminativeLoss(settings)(*row_image(points, ids, classes))
    return float(total.detach()), {name: float(value) for name, value in parts.items()}


def test_one_cluster_inside_the_margin_costs_only_the_pull_to_the_origin():
    # mean (1.1, 0.9); the pixels lie 0.14, 0.22 and 0.22 from it, inside delta_v = 0.5; C = 1: no distance
    total, parts = loss_of([(1.0, 1.0), (1.3, 1.0), (1.0, 0.7)], [1, 1, 1])
    assert parts["variance"] == 0.0 and parts["distance"] == 0.0
    assert parts["regularisation"] == pytest.approx(math.sqrt(1.1**2 + 0.9**2))
    assert total == pytest.approx(0.001 * math.sqrt(2.02))


def test_pixels_outside_delta_v_pay_the_squared_excess():
    # mean (1, 0); distances 1, 1, 0 -> excess 0.5, 0.5, 0 -> L_var = (0.25 + 0.25 + 0) / 3
    total, parts = loss_of([(0.0, 0.0), (2.0, 0.0), (1.0, 0.0)], [3, 3, 3])
    assert parts["variance"] == pytest.approx(1.0 / 6.0)
    assert parts["regularisation"] == pytest.approx(1.0)
    assert total == pytest.approx(1.0 / 6.0 + 0.001)


@pytest.mark.parametrize(("gap", "expected"), [(2.0, 1.0), (2.9, 0.01), (3.0, 0.0), (3.5, 0.0)])
def test_two_centres_are_pushed_to_twice_delta_d(gap: float, expected: float):
    # centres (0, 0.1) and (gap, 0.1): both ordered pairs pay (3 - gap)^2, divided by C (C - 1) = 2
    points = [(0.0, 0.0), (0.0, 0.2), (gap, 0.0), (gap, 0.2)]
    total, parts = loss_of(points, [1, 1, 2, 2])
    assert parts["variance"] == 0.0
    assert parts["distance"] == pytest.approx(expected)
    assert parts["regularisation"] == pytest.approx((0.1 + math.hypot(gap, 0.1)) / 2)
    assert total == pytest.approx(expected + 0.001 * parts["regularisation"])


def test_distance_term_averages_over_ordered_pairs():
    # centres at x = 0, 1, 5: only the pair (0, 1) is closer than 3 and pays (3 - 1)^2 = 4 twice; 3 * 2 pairs
    _, parts = loss_of([(0.0, 0.0), (1.0, 0.0), (5.0, 0.0)], [1, 2, 3])
    assert parts["distance"] == pytest.approx(8.0 / 6.0)


def test_regularisation_is_the_mean_centre_norm():
    # single-pixel instances at (3, 4) and (0, -6): norms 5 and 6, more than 3 apart, no spread
    total, parts = loss_of([(3.0, 4.0), (0.0, -6.0)], [1, 2])
    assert parts == pytest.approx({"variance": 0.0, "distance": 0.0, "regularisation": 5.5})
    assert total == pytest.approx(0.0055)


def test_l1_norm_measures_the_spread_in_l1():
    # mean (0.5, 0.5): each pixel is 1 away in L1 (excess 0.5) and 0.71 in L2 (excess 0.21)
    points, ids = [(0.0, 0.0), (1.0, 1.0)], [1, 1]
    assert loss_of(points, ids, settings=DiscriminativeSettings(norm=1))[1]["variance"] == pytest.approx(0.25)
    assert loss_of(points, ids)[1]["variance"] == pytest.approx((math.sqrt(0.5) - 0.5) ** 2)


def test_image_without_instances_adds_zero_and_keeps_the_gradient_finite():
    embeddings = torch.randn(2, 8, 5, 6, requires_grad=True)
    instances = torch.zeros(2, 5, 6, dtype=torch.int64)
    total, parts = DiscriminativeLoss()(embeddings, instances)
    total.backward()
    assert float(total.detach()) == 0.0 and all(float(value) == 0.0 for value in parts.values())
    assert embeddings.grad is not None and bool(torch.all(embeddings.grad == 0))

    # one empty and one non-empty image: the batch mean halves the non-empty image's loss
    instances[1, 0, :3] = 7
    alone, _ = DiscriminativeLoss()(embeddings[1:].detach(), instances[1:])
    both, _ = DiscriminativeLoss()(embeddings.detach(), instances)
    assert float(both) == pytest.approx(float(alone) / 2)
    assert float(alone) > 0


def test_classes_without_instances_contribute_nothing():
    # class 1 is only on a background pixel: the image's terms are those of class 2 alone
    points, ids = [(0.0, 0.0), (2.0, 0.0), (1.0, 0.3), (1.0, 0.0), (9.0, 9.0)], [4, 4, 9, 9, 0]
    total, parts = loss_of(points, ids, classes=[2, 2, 2, 2, 1])
    single_total, single_parts = loss_of(points, ids)
    assert total == pytest.approx(single_total) and parts == pytest.approx(single_parts)


def test_classes_share_the_embedding_space():
    # the same id 1 in two classes (an instance map per class), centres (0, 0.1) and (1.2, 0.1)
    points = [(0.0, 0.0), (0.0, 0.2), (1.2, 0.0), (1.2, 0.2)]
    embeddings, instances, classes = row_image(points, [1, 1, 1, 1], [0, 0, 1, 1])
    total, parts = DiscriminativeLoss(NO_REG)(embeddings, instances, classes)
    total.backward()
    # two instances, one per class: no spread, no push between classes, nothing moves
    assert float(total.detach()) == 0.0 and parts["distance"] == 0.0
    assert embeddings.grad is not None and bool(torch.all(embeddings.grad == 0))
    # the image's terms average over its two classes
    _, parts = loss_of(points, [1, 1, 1, 1], [0, 0, 1, 1])
    assert parts["regularisation"] == pytest.approx((0.1 + math.hypot(1.2, 0.1)) / 2)
    # the same two instances in one class are pushed apart: (3 - 1.2)^2
    assert loss_of(points, [1, 1, 2, 2], settings=NO_REG)[1]["distance"] == pytest.approx(1.8**2)


def test_variance_gradient_pulls_outlying_pixels_towards_their_mean():
    # mean (0, 0); (+-2, 0) lie 1.5 beyond delta_v, (0, +-0.3) inside it
    embeddings, instances, _ = row_image([(-2.0, 0.0), (2.0, 0.0), (0.0, 0.3), (0.0, -0.3)], [1, 1, 1, 1])
    total, parts = DiscriminativeLoss(NO_REG)(embeddings, instances)
    assert parts["variance"] == pytest.approx(2 * 1.5**2 / 4)
    total.backward()
    assert embeddings.grad is not None
    gradient = embeddings.grad[0, :, 0].T  # (pixel, dim)
    # d/dx of (1/4) (|x - mu| - 0.5)^2 = (1/2) 1.5 (x - mu)/|x - mu|; the path through mu cancels by symmetry
    expected = torch.tensor([[-0.75, 0.0], [0.75, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(gradient, expected)
    with torch.no_grad():
        step, _ = DiscriminativeLoss(NO_REG)(embeddings - 0.1 * embeddings.grad, instances)
    assert float(step) < float(total.detach())


def plain_loss(embeddings: torch.Tensor, instances: torch.Tensor, classes: torch.Tensor,
               settings: DiscriminativeSettings) -> torch.Tensor:
    """The paper's formulas with a loop over images, classes and instances."""
    image_losses = []
    for points, ids, semantic in zip(embeddings.flatten(2), instances.flatten(1), classes.flatten(1)):
        class_losses = []
        for class_id in semantic[ids > 0].unique().tolist():
            members = [(ids == k) & (semantic == class_id) for k in ids[(ids > 0) & (semantic == class_id)].unique()]
            centres = [points[:, mask].mean(dim=1) for mask in members]
            variance = sum(torch.mean(torch.clamp((points[:, mask] - centre[:, None]).norm(dim=0)
                                                  - settings.delta_var, min=0) ** 2)
                           for mask, centre in zip(members, centres)) / len(centres)
            pairs = list(itertools.permutations(centres, 2))
            distance = (sum(torch.clamp(2 * settings.delta_dist - (a - b).norm(), min=0) ** 2 for a, b in pairs)
                        / len(pairs)) if pairs else 0.0
            regularisation = sum(centre.norm() for centre in centres) / len(centres)
            class_losses.append(settings.alpha * variance + settings.beta * distance
                                + settings.gamma * regularisation)
        image_losses.append(sum(class_losses) / len(class_losses) if class_losses else torch.zeros(()))
    return torch.stack([torch.as_tensor(value, dtype=torch.float64) for value in image_losses]).mean()


def test_matches_a_plain_loop_over_images_classes_and_instances():
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(3, 4, 6, 7, generator=generator, dtype=torch.float64)
    instances = torch.randint(0, 4, (3, 6, 7), generator=generator) * 5  # ids 0, 5, 10, 15
    classes = torch.randint(0, 3, (3, 6, 7), generator=generator)
    instances[2] = 0
    settings = DiscriminativeSettings(delta_var=0.3, delta_dist=1.0, alpha=1.0, beta=2.0, gamma=0.1)
    total, _ = DiscriminativeLoss(settings)(embeddings, instances, classes)
    torch.testing.assert_close(total, plain_loss(embeddings, instances, classes, settings))


def test_rejects_bad_targets_and_settings():
    loss = DiscriminativeLoss()
    with pytest.raises(ValueError):
        loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 3, 5, dtype=torch.int64))
    with pytest.raises(ValueError):
        loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 3, 4, dtype=torch.int32))
    with pytest.raises(ValueError):
        loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 3, 4, dtype=torch.int64), -torch.ones(1, 3, 4, dtype=torch.int64))
    with pytest.raises(ValueError):
        DiscriminativeSettings(norm=3)


# clustering


def planted(dims: int, count: int, seed: int, spread: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Points (P, D) and labels 1..count: clusters of 20 to 400 points around centres +-2.2 e_k (at
    least 3.1 apart, as a trained embedding's 2 delta_d), each coordinate off by N(0, spread), shuffled."""
    rng = np.random.default_rng(seed)
    centres = np.concatenate([2.2 * np.eye(dims), -2.2 * np.eye(dims)])[rng.permutation(2 * dims)[:count]]
    sizes = rng.integers(20, 400, count)
    labels = np.repeat(np.arange(1, count + 1), sizes)
    points = centres[labels - 1] + rng.normal(scale=spread, size=(labels.shape[0], dims))
    order = rng.permutation(labels.shape[0])
    return points[order].astype(np.float32), labels[order]


def assert_same_partition(truth: np.ndarray, found: np.ndarray) -> None:
    """Every planted cluster is exactly one found instance and the other way round."""
    assert bool(np.all(found > 0))
    pairs = set(zip(truth.tolist(), found.tolist()))
    assert len(pairs) == len(np.unique(truth)) == len(np.unique(found))


@pytest.mark.parametrize(("dims", "count"), [(8, 16), (16, 12)])
def test_recovers_planted_clusters(dims: int, count: int):
    points, truth = planted(dims, count, seed=dims)
    labels, sizes = cluster_points(points)
    assert_same_partition(truth, labels)
    assert labels[0] == 1  # the first point starts the first search
    np.testing.assert_array_equal(sizes, np.bincount(labels)[1:])


def test_image_clustering_labels_the_foreground_only():
    points, truth = planted(8, 6, seed=1)
    height, width = 40, 50
    foreground = np.zeros(height * width, bool)
    foreground[np.random.default_rng(2).choice(height * width, points.shape[0], replace=False)] = True
    embeddings = np.full((8, height * width), 2.2, np.float32)  # background embeds on a centre: ignored
    embeddings[:, foreground] = points.T
    result = cluster_embeddings(torch.from_numpy(embeddings.reshape(8, height, width)),
                                torch.from_numpy(foreground.reshape(height, width)))
    assert result.instance_map.shape == (height, width) and result.instance_map.dtype == np.int32
    assert bool(np.all(result.instance_map.ravel()[~foreground] == 0))
    assert_same_partition(truth, result.instance_map.ravel()[foreground])
    assert result.sizes.sum() == points.shape[0]


def test_clusters_closer_than_the_threshold_merge():
    points, truth = planted(8, 3, seed=5)
    centres = np.stack([points[truth == k].mean(axis=0) for k in (1, 2, 3)])
    # move cluster 2 to 1.0 from cluster 1: one window holds both, the mode is between them
    points[truth == 2] += centres[0] + np.eye(8, dtype=np.float32)[0] - centres[1]
    labels, sizes = cluster_points(points)
    assert len(sizes) == 2
    assert_same_partition(np.where(truth == 2, 1, truth), labels)


def test_empty_or_too_small_foreground_gives_nothing():
    embeddings = np.zeros((8, 10, 12), np.float32)
    result = cluster_embeddings(embeddings, np.zeros((10, 12), bool))
    assert result.sizes.shape == (0,) and not result.instance_map.any()
    few = np.zeros((10, 12), bool)
    few[0, :15] = True  # 15 identical pixels, one fewer than min_pixels
    assert cluster_embeddings(embeddings, few).sizes.shape == (0,)


def test_instances_under_min_pixels_are_dropped():
    rng = np.random.default_rng(7)
    big = rng.normal(scale=0.1, size=(100, 8))
    small = rng.normal(scale=0.1, size=(5, 8)) + 4.0
    points = np.concatenate([small, big]).astype(np.float32)  # the small cluster is found first
    labels, sizes = cluster_points(points, MeanShiftSettings(min_pixels=10))
    np.testing.assert_array_equal(sizes, [100])
    assert bool(np.all(labels[:5] == 0)) and bool(np.all(labels[5:] == 1))
    _, sizes = cluster_points(points, MeanShiftSettings(min_pixels=5))
    np.testing.assert_array_equal(sizes, [5, 100])


def test_stops_at_max_instances():
    points, _ = planted(8, 5, seed=9)
    labels, sizes = cluster_points(points, MeanShiftSettings(max_instances=3))
    assert len(sizes) == 3 and set(np.unique(labels)) == {0, 1, 2, 3}


def test_rejects_bad_settings_and_shapes():
    with pytest.raises(ValueError):
        MeanShiftSettings(bandwidth=0.0)
    with pytest.raises(ValueError):
        MeanShiftSettings(min_pixels=0)
    with pytest.raises(ValueError):
        cluster_embeddings(np.zeros((8, 4, 5), np.float32), np.zeros((4, 6), bool))


def test_instance_scores_discount_fragments_and_mixtures() -> None:
    """Equal probability, different evidence: the bigger and the tighter cluster score higher, one whose median
    pixel lies 2 delta_dist from its mean scores 0, and without the size factor a point cluster scores its
    mean probability."""
    rng = np.random.default_rng(0)
    instance_map = np.zeros((20, 40), np.int32)
    instance_map[:10, :20] = 1   # 200 pixels, tight
    instance_map[10:, :20] = 2   # 200 pixels, loose
    instance_map[:2, 20:30] = 3  # 20 pixels, tight
    instance_map[10:, 20:] = 4   # 200 pixels, a mixture of two far-apart centres
    embeddings = np.zeros((2, 20, 40), np.float32)
    embeddings[:, instance_map == 2] = rng.normal(0.0, 0.5, (2, 200))
    embeddings[0, instance_map == 4] = np.where(np.arange(200) % 2, 3.0, -3.0)
    probability = np.full((20, 40), 0.8, np.float32)
    scores = instance_scores(embeddings, instance_map, probability, delta_dist=1.5)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert scores[0] > scores[1] > 0 and scores[0] > scores[2] > 0 and scores[3] == 0.0
    assert scores[0] == pytest.approx(0.8 * (1 - np.exp(-2.0)), rel=1e-5)
    plain = instance_scores(embeddings, instance_map, probability, delta_dist=1.5, size_scale_px=0.0)
    assert plain[0] == pytest.approx(0.8) and plain[2] == pytest.approx(0.8)
    assert len(instance_scores(embeddings, np.zeros_like(instance_map), probability, 1.5)) == 0
