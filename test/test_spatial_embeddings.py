"""SpatialEmbeddings: the Lovász hinge against hand-worked values, the loss at and away from a perfect
output, the clustering on constructed embeddings, the network's shape and start, a short overfit on
rendered sticks, the predictor from image to rotated boxes, and the model files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch

from refine_perception.data.synthetic.sticks import render_sticks
from refine_perception.instances.decoders import SeedDecoder
from refine_perception.instances.predict import InstancePredictor, oriented_box, upsample_mask
from refine_perception.models.clrnet.weights import ModelFileError
from refine_perception.models.spatial_embeddings.clustering import ClusterSettings, cluster
from refine_perception.models.spatial_embeddings.embedding import (
    kernel_distance,
    kernel_scale,
    pixel_coordinates,
    split_output,
)
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.loss import SpatialEmbeddingLoss
from refine_perception.models.spatial_embeddings.lovasz import lovasz_hinge
from refine_perception.models.spatial_embeddings.weights import load_spatial_embeddings, save_spatial_embeddings

PPU = 64.0  # pixels per embedding unit in the constructed outputs: every offset stays well inside tanh's range
NARROW_SIGMA = 1.0  # exp(10) per squared unit: phi = 0.5 at 0.36 px, so a pixel off the centre scores ~0


def blocks(height: int = 32, width: int = 48) -> np.ndarray:
    """Three instances, two of them touching, on background 0."""
    ids = np.zeros((height, width), np.int64)
    ids[4:12, 4:20] = 1
    ids[12:20, 4:20] = 2
    ids[20:28, 30:44] = 3
    return ids


def perfect_output(ids: np.ndarray, seeds: dict[int, float] | None = None, n_sigma: int = 2,
                   classes: dict[int, int] | None = None, num_classes: int = 1) -> torch.Tensor:
    """The raw output (1, C, H, W) of a network that is right: every instance pixel embeds exactly at
    its instance's centroid, background stays at its own position, sigma is narrow everywhere and the
    seed of instance k (class classes[k]) is seeds[k] (default: almost 1), background almost 0."""
    height, width = ids.shape
    raw = torch.zeros(1, 2 + n_sigma + num_classes, height, width, dtype=torch.float64)
    coordinates = pixel_coordinates(height, width, PPU, raw)
    raw[0, 2:2 + n_sigma] = NARROW_SIGMA
    raw[0, 2 + n_sigma:] = -20.0
    for k in np.unique(ids[ids > 0]):
        inside = torch.from_numpy(ids == k)
        centre = coordinates[:, inside].mean(dim=1, keepdim=True)
        raw[0, :2, inside] = torch.atanh(centre - coordinates[:, inside])
        probability = (seeds or {}).get(int(k), 1.0 - 1e-8)
        raw[0, 2 + n_sigma + (classes or {}).get(int(k), 0), inside] = math.log(probability / (1.0 - probability))
    return raw.float()


# --- Lovász hinge -------------------------------------------------------------------------------------

def test_lovasz_hinge_hand_computed() -> None:
    # errors 1 - logit * sign: -1 (the positive), 0.5 and 1.5 (negatives); sorted 1.5, 0.5, -1 with labels
    # 0, 0, 1. Jaccard loss of each prefix: 1 - 1/2, 1 - 1/3, 1 - 0/3 -> steps 1/2, 1/6, 1/3;
    # loss = 1.5 * 1/2 + 0.5 * 1/6 + relu(-1) * 1/3 = 5/6
    logits = torch.tensor([2.0, -0.5, 0.5], requires_grad=True)
    loss = lovasz_hinge(logits, torch.tensor([1, 0, 0]))
    assert loss.item() == pytest.approx(5 / 6)
    loss.backward()  # a negative's error is 1 + logit, weighted by its step; the positive is past its margin
    np.testing.assert_allclose(logits.grad.numpy(), [0.0, 1 / 6, 0.5], atol=1e-7)
    # every pixel beyond its margin: no loss; a lone positive with error 2 costs 2 (Jaccard step 1)
    assert lovasz_hinge(torch.tensor([3.0, -2.0]), torch.tensor([True, False])).item() == 0.0
    assert lovasz_hinge(torch.tensor([-1.0]), torch.tensor([True])).item() == pytest.approx(2.0)
    # two positives, one wrong by 1.5 and one right: steps are 1 - 1/2 then 1 - 0/2
    assert lovasz_hinge(torch.tensor([-0.5, 2.0]), torch.tensor([1, 1])).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="flat logits"):
        lovasz_hinge(torch.zeros(2, 2), torch.zeros(2, 2))


# --- loss ---------------------------------------------------------------------------------------------

def test_loss_is_near_zero_for_a_perfect_output_and_high_for_wrong_ones() -> None:
    ids = torch.from_numpy(blocks())[None]
    criterion = SpatialEmbeddingLoss(2, PPU)
    raw = perfect_output(blocks())
    loss, parts = criterion(raw, ids)
    assert loss.item() < 0.01 and all(value.item() < 0.005 for value in parts.values())

    no_offsets = raw.clone()
    no_offsets[:, :2] = 0.0  # pixels stay where they are: only the one nearest each centroid scores
    assert criterion(no_offsets, ids)[1]["instance"].item() > 1.0
    merged = perfect_output(np.where(blocks() == 2, 1, blocks()))  # two touching instances as one
    assert criterion(merged, ids)[1]["instance"].item() > 0.5
    inverted = raw.clone()
    inverted[:, 4] = -inverted[:, 4]  # seeds high on background, low on instances
    assert criterion(inverted, ids)[1]["seed"].item() > 1.0
    uneven = raw.clone()
    uneven[:, 2:4, 4:8] = 0.5  # half of instance 1 with another sigma
    assert criterion(uneven, ids)[1]["variance"].item() > 0.01


def full_image_instance_term(raw: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The paper's instance term with the Lovász hinge over every pixel of the image."""
    embeddings = split_output(raw, 2, PPU)
    coordinates = pixel_coordinates(raw.shape[2], raw.shape[3], PPU, raw)
    terms = []
    for k in ids.unique()[1:]:
        inside = ids[0] == k
        centre = coordinates[:, inside].mean(dim=1)[:, None, None]
        scale = kernel_scale(embeddings.sigma[0][:, inside].mean(dim=1))[:, None, None]
        phi = torch.exp(-kernel_distance(embeddings.position[0], centre, scale))
        terms.append(lovasz_hinge(2 * phi.flatten() - 1, inside.flatten()))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("sigma", [1.0, 0.3])
def test_lovasz_on_the_pixels_that_matter_equals_the_full_image(sigma: float) -> None:
    generator = torch.Generator().manual_seed(0)
    ids = torch.from_numpy(blocks())[None]
    raw = perfect_output(blocks()) + 0.1 * torch.randn(1, 5, 32, 48, generator=generator)
    raw[:, 2:4] = sigma + 0.05 * torch.randn(1, 2, 32, 48, generator=generator)  # 0.3: wide kernels
    full = full_image_instance_term(raw, ids)
    exact = SpatialEmbeddingLoss(2, PPU, lovasz_tolerance=0.0)(raw, ids)[1]["instance"]
    assert exact.item() == pytest.approx(full.item(), rel=1e-6)
    approximate = SpatialEmbeddingLoss(2, PPU, lovasz_tolerance=1e-3)(raw, ids)[1]["instance"]
    assert full.item() - 1e-3 <= approximate.item() <= full.item() + 1e-6


def test_loss_with_classes_and_without_instances() -> None:
    ids = torch.from_numpy(blocks())[None]
    classes = torch.from_numpy(np.where(blocks() == 3, 1, 0))[None]
    raw = perfect_output(blocks(), classes={3: 1}, num_classes=2)
    criterion = SpatialEmbeddingLoss(2, PPU)
    assert criterion(raw, ids, classes)[0].item() < 0.01
    assert criterion(raw, ids, torch.zeros_like(classes))[1]["seed"].item() > 0.5  # class 1's seed is wrong
    with pytest.raises(ValueError, match="need a class map"):
        criterion(raw, ids)
    mixed = classes.clone()
    mixed[0, 4, 4] = 1  # one pixel of instance 1 in another class
    with pytest.raises(ValueError, match="same class"):
        criterion(raw, ids, mixed)
    with pytest.raises(ValueError, match="int64"):
        criterion(raw, ids.int(), classes)

    raw = torch.zeros(2, 5, 16, 16, requires_grad=True)  # no instances: the seeds learn background
    loss, parts = criterion(raw, torch.zeros(2, 16, 16, dtype=torch.int64))
    assert parts["instance"].item() == 0.0 and parts["seed"].item() == pytest.approx(0.25)
    loss.backward()
    assert raw.grad[:, 4].abs().min() > 0


# --- clustering ---------------------------------------------------------------------------------------

def test_clustering_recovers_constructed_instances() -> None:
    ids = blocks()
    seeds = {1: 0.95, 2: 0.99, 3: 0.97}
    found = cluster(split_output(perfect_output(ids, seeds), 2, PPU))
    assert found.instance_map.dtype == np.int32 and found.instance_map.shape == ids.shape
    # strongest seed first: instance 2, then 3, then 1; exactly their pixels
    for label, k in enumerate((2, 3, 1), start=1):
        np.testing.assert_array_equal(found.instance_map == label, ids == k)
    np.testing.assert_allclose(found.scores, [0.99, 0.97, 0.95], atol=1e-6)
    np.testing.assert_array_equal(found.class_ids, [0, 0, 0])


def test_clustering_respects_its_thresholds() -> None:
    ids = blocks()
    seeds = {1: 0.95, 2: 0.99, 3: 0.8}
    embeddings = split_output(perfect_output(ids, seeds), 2, PPU)
    assert len(cluster(embeddings).scores) == 2  # 0.8 starts no instance at the default 0.9
    assert len(cluster(embeddings, ClusterSettings(seed_threshold=0.75)).scores) == 3
    high_foreground = cluster(embeddings, ClusterSettings(seed_threshold=0.75, foreground_threshold=0.96))
    np.testing.assert_array_equal(high_foreground.instance_map, np.where(ids == 2, 1, 0))
    assert len(cluster(embeddings, ClusterSettings(max_instances=1)).scores) == 1
    # instance 3 has 112 pixels, 1 and 2 have 128 each
    small = cluster(embeddings, ClusterSettings(seed_threshold=0.75, min_pixels=120))
    np.testing.assert_allclose(small.scores, [0.99, 0.95], atol=1e-6)
    assert len(cluster(embeddings, ClusterSettings(max_seeds=0)).scores) == 0
    with pytest.raises(ValueError, match="probabilities"):
        ClusterSettings(seed_threshold=1.5)


def test_clustering_of_several_classes() -> None:
    ids = blocks()
    found = cluster(split_output(perfect_output(ids, {1: 0.95, 3: 0.99}, classes={3: 1}, num_classes=2), 2, PPU))
    np.testing.assert_array_equal(found.class_ids, [0, 0, 1])  # class 0 first, in seed order
    np.testing.assert_array_equal(found.instance_map == 3, ids == 3)


# --- network ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes, n_sigma, width", [(1, 2, 0.25), (3, 1, 0.5)])
def test_network_shape_and_start(num_classes: int, n_sigma: int, width: float) -> None:
    torch.manual_seed(0)
    model = SpatialEmbeddingNet(num_classes, n_sigma, width).eval()
    with torch.no_grad():
        raw = model(torch.rand(2, 3, 24, 40))
    assert raw.shape == (2, 2 + n_sigma + num_classes, 24, 40)
    assert torch.equal(raw[:, :2], torch.zeros_like(raw[:, :2]))  # offsets 0: pixels embed at themselves
    assert torch.equal(raw[:, 2:2 + n_sigma], torch.ones_like(raw[:, 2:2 + n_sigma]))  # sigma 1
    assert raw[:, 2 + n_sigma:].std() > 0  # the seed branch is not initialised specially
    assert model.class_names == (("stick",) if num_classes == 1 else ("class_0", "class_1", "class_2"))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 20, 40))
    with pytest.raises(ValueError, match="width"):
        SpatialEmbeddingNet(width=0.2)


def test_short_training_overfits_two_scenes() -> None:
    torch.manual_seed(0)
    scenes = [render_sticks(seed, 128, 96) for seed in (1, 2)]
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    ids = torch.from_numpy(np.stack([s.instance_map for s in scenes]).astype(np.int64) + 1)
    model = SpatialEmbeddingNet(width=0.25, input_size=(96, 128))
    criterion = SpatialEmbeddingLoss.for_model(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        loss, _ = criterion(model(images), ids)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    # measured: 2.29 -> 1.58 (instance term 1.98 -> 1.43, seed 0.46 -> 0.12)
    assert min(losses[-5:]) < 0.8 * losses[0]


# --- predictor ----------------------------------------------------------------------------------------

def test_oriented_box_convention() -> None:
    for degrees in (0, 30, 60, 90, 120, 150, 179):
        mask = np.zeros((200, 300), np.uint8)
        corners = cv2.boxPoints(((150.0, 100.0), (81.0, 13.0), degrees))  # cv2 angles turn +x towards +y
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
        box = oriented_box(mask.astype(bool))
        expected = math.radians(degrees if degrees <= 90 else degrees - 180)
        assert abs(math.remainder(box.theta - expected, math.pi)) < math.radians(1.5), degrees
        assert -math.pi / 2 < box.theta <= math.pi / 2
        assert box.length == pytest.approx(82, abs=2) and box.width == pytest.approx(14, abs=2)
        assert (box.center_x, box.center_y) == pytest.approx((150.0, 100.0), abs=1.0)
    assert oriented_box(np.zeros((4, 4), bool)) is None
    vertical = np.zeros((50, 50), bool)
    vertical[5:45, 20:26] = True
    box = oriented_box(vertical)
    assert (box.theta, box.length, box.width, box.center_x, box.center_y) == (math.pi / 2, 40.0, 6.0, 22.5, 24.5)


@pytest.mark.parametrize("size", [(480, 640), (50, 70), (20, 30)])
def test_upsampled_mask_matches_a_full_image_resize(size: tuple[int, int]) -> None:
    ids = blocks()
    for k in (1, 3):
        mask = (ids == k) | (np.arange(48) < 2)[None, :] * (k == 3)  # instance 3 also touches the left border
        full = cv2.resize(mask.astype(np.float32), size[::-1], interpolation=cv2.INTER_LINEAR) > 0.5
        ours = upsample_mask(mask, size)
        assert ours.shape == size and ours.dtype == bool
        assert np.count_nonzero(ours != full) <= 0.01 * np.count_nonzero(full)


def test_predictor_end_to_end_on_a_rotated_stick() -> None:
    """A network that outputs exactly one rotated bar, through resizing, clustering and upsampling."""
    model_size, image_size = (64, 96), (240, 360)
    bar = ((48.0, 32.0), (60.0, 8.0), 30.0)  # centre, (length, width), degrees from +x towards +y
    ids = np.zeros(model_size, np.uint8)
    cv2.fillPoly(ids, [np.round(cv2.boxPoints(bar)).astype(np.int32)], 1)
    raw = perfect_output(ids.astype(np.int64)).numpy()
    predictor = InstancePredictor(lambda batch: np.repeat(raw, len(batch), axis=0), model_size, SeedDecoder(2, PPU),
                                  ("stick",))
    images = [np.zeros((*image_size, 3), np.uint8), np.zeros((*model_size, 3), np.uint8)]
    results = predictor(images)
    assert [len(found) for found in results] == [1, 1]
    big, same = results[0][0], results[1][0]
    np.testing.assert_array_equal(same.mask, ids.astype(bool))
    assert big.mask.shape == image_size and (big.class_id, big.class_name, big.grasp) == (0, "stick", None)
    assert big.score == pytest.approx(1.0, abs=1e-6)
    box = big.box  # the bar scaled by 3.75 in both directions
    assert abs(box.theta - math.radians(30)) < math.radians(2)
    assert box.length == pytest.approx(60 * 3.75, rel=0.05) and box.width == pytest.approx(8 * 3.75, rel=0.2)
    assert (box.center_x, box.center_y) == pytest.approx((48.5 * 3.75 - 0.5, 32.5 * 3.75 - 0.5), abs=2.0)
    assert predictor([]) == []


# --- model files --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SpatialEmbeddingNet, torch.Tensor]:
    torch.manual_seed(0)
    model = SpatialEmbeddingNet(2, 1, 0.25, input_size=(32, 48), pixels_per_unit=100.0,
                                class_names=("stick", "cube")).eval()
    path = tmp_path_factory.mktemp("model") / "instances.safetensors"
    save_spatial_embeddings(path, model, {"data": "unit test"})
    return path, model, torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))


def test_model_file_round_trip(saved: tuple, tmp_path: Path) -> None:
    path, model, images = saved
    loaded, metadata = load_spatial_embeddings(path)
    assert not loaded.training
    assert (loaded.num_classes, loaded.n_sigma, loaded.width, loaded.input_size, loaded.pixels_per_unit,
            loaded.class_names) == (2, 1, 0.25, (32, 48), 100.0, ("stick", "cube"))
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    stored = json.loads(path.with_suffix(".json").read_text())
    assert stored == metadata and stored["data"] == "unit test" and stored["dtype"] == "float32"
    assert stored["format"] == "refine_perception.spatial_embeddings/1" and stored["class_names"] == ["stick", "cube"]

    half = tmp_path / "default.safetensors"
    save_spatial_embeddings(half, model, dtype=torch.float16)
    assert 0.45 < half.stat().st_size / path.stat().st_size < 0.55
    assert {t.dtype for t in safetensors.torch.load_file(str(half)).values() if t.is_floating_point()} == {
        torch.float16}
    with torch.no_grad():
        torch.testing.assert_close(load_spatial_embeddings(half)[0](images), model(images), rtol=0, atol=0.02)
    predictor, _ = InstancePredictor.from_file(half)
    assert predictor.input_size == (32, 48) and predictor.class_names == ("stick", "cube")


def test_damaged_model_files_are_refused(saved: tuple, tmp_path: Path) -> None:
    path = tmp_path / saved[0].name
    data = bytearray(saved[0].read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    path.with_suffix(".json").write_bytes(saved[0].with_suffix(".json").read_bytes())
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_spatial_embeddings(path)
    path.with_suffix(".json").unlink()
    path.write_bytes(saved[0].read_bytes()[:500])  # truncated, no json to compare with
    with pytest.raises(ModelFileError, match="cannot read safetensors"):
        load_spatial_embeddings(path)
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(ModelFileError, match="not a refine_perception SpatialEmbeddings file"):
        load_spatial_embeddings(path)
    with pytest.raises(ModelFileError, match="not found"):
        InstancePredictor.from_file(tmp_path / "missing.safetensors")
