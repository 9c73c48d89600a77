"""The discriminative-loss network as a selectable instance model: output layout, its loss with the semantic
head, the model file (round trip, fp16, refusal of other formats), the runtime (onnxruntime equals torch
eager) and the predictor on hand-made outputs (planted embedding clusters come back as instances)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from refine_perception.instances.decoders import MeanShiftDecoder
from refine_perception.instances.predict import InstancePredictor
from refine_perception.models.discriminative.clustering import SIZE_SCALE_PX
from refine_perception.models.discriminative.loss import DiscriminativeLoss, DiscriminativeNetLoss
from refine_perception.models.discriminative.network import DiscriminativeNet
from refine_perception.models.discriminative.output import split_output
from refine_perception.models.discriminative.weights import FORMAT, load_discriminative, save_discriminative
from refine_perception.models.model_file import ModelFileError
from refine_perception.models.spatial_embeddings.clustering import ClusterSettings
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.weights import FORMAT as SPATIAL_FORMAT
from refine_perception.models.spatial_embeddings.weights import save_spatial_embeddings
from refine_perception.runtime import RuntimeConfig, load_task_model, open_network

SIZE = (48, 64)


def tiny(coordinates: bool = True, seed: int = 0, **kwargs: object) -> DiscriminativeNet:
    torch.manual_seed(seed)
    return DiscriminativeNet(1, 4, 0.25, coordinates=coordinates, input_size=SIZE, **kwargs).eval()


# --- network and loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes, embedding_dim, coordinates", [(1, 8, False), (3, 16, True)])
def test_network_output_layout(num_classes: int, embedding_dim: int, coordinates: bool) -> None:
    torch.manual_seed(0)
    model = DiscriminativeNet(num_classes, embedding_dim, 0.25, coordinates=coordinates).eval()
    with torch.no_grad():
        raw = model(torch.rand(2, 3, 24, 40))
    assert raw.shape == (2, embedding_dim + num_classes + 1, 24, 40)
    embedding, logits = split_output(raw, embedding_dim)
    assert embedding.shape[1] == embedding_dim and logits.shape[1] == num_classes + 1
    assert model.input_size == (240, 320) and model.class_names == (
        ("stick",) if num_classes == 1 else ("class_0", "class_1", "class_2"))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 20, 40))
    with pytest.raises(ValueError, match="delta_var < delta_dist"):
        DiscriminativeNet(delta_var=1.5, delta_dist=1.0)


def test_coordinates_reach_only_the_embedding() -> None:
    """Same weights elsewhere: with coordinates appended, the embedding changes and the logits do not."""
    plain, with_xy = tiny(coordinates=False), tiny(coordinates=True)
    state = with_xy.state_dict()
    state.update({k: v for k, v in plain.state_dict().items() if not k.startswith("embedding_decoder")})
    with_xy.load_state_dict(state)
    images = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        a, b = split_output(plain(images), 4), split_output(with_xy(images), 4)
    assert torch.equal(a.logits, b.logits) and a.embedding.shape == b.embedding.shape


def test_net_loss_adds_the_semantic_cross_entropy() -> None:
    torch.manual_seed(1)
    raw = torch.randn(2, 4 + 2, 8, 12, requires_grad=True)
    ids = torch.zeros(2, 8, 12, dtype=torch.int64)
    ids[0, :4, :5], ids[0, 5:, 6:], ids[1, 2:6, 3:9] = 1, 7, 2
    total, parts = DiscriminativeNetLoss(4, semantic_weight=2.0)(raw, ids)
    with torch.no_grad():
        discriminative, _ = DiscriminativeLoss()(raw[:, :4], ids)
        cross_entropy = F.cross_entropy(raw[:, 4:], (ids > 0).long())
    assert float(parts["semantic"]) == pytest.approx(float(cross_entropy))
    assert total.item() == pytest.approx(float(discriminative + 2.0 * cross_entropy))
    total.backward()
    assert raw.grad is not None and bool(raw.grad[:, 4:].abs().sum() > 0) and bool(raw.grad[:, :4].abs().sum() > 0)


def test_line_channels_are_a_line_through_the_position() -> None:
    """With a, b, c constant (decoder weights zero, biases set), a line channel equals a X + b Y + c at every
    pixel, X and Y centred on the image in units of line_unit_px; the free channels come first."""
    model = DiscriminativeNet(1, 4, 0.25, line_channels=2, line_unit_px=8.0, input_size=SIZE).eval()
    head = model.embedding_decoder.output
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.1, 0.2, 1.0, 0.0, 0.0, 2.0, 0.5, -1.0]))  # free x2, a x2, b x2, c x2
    embedding = model(torch.rand(1, 3, *SIZE))[0, :4]
    height, width = SIZE
    xs = (torch.arange(width) - (width - 1) / 2) / 8.0
    ys = (torch.arange(height) - (height - 1) / 2) / 8.0
    assert torch.allclose(embedding[0], torch.full(SIZE, 0.1)) and torch.allclose(embedding[1], torch.full(SIZE, 0.2))
    assert torch.allclose(embedding[2], xs.expand(height, width) + 0.5, atol=1e-5)
    assert torch.allclose(embedding[3], 2.0 * ys[:, None].expand(height, width) - 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="line_channels"):
        DiscriminativeNet(1, 4, 0.25, line_channels=5)


def test_line_channels_survive_the_model_file(tmp_path: Path) -> None:
    model = DiscriminativeNet(1, 4, 0.25, line_channels=2, line_unit_px=8.0, input_size=SIZE).eval()
    save_discriminative(tmp_path / "lines.safetensors", model)
    loaded, metadata = load_discriminative(tmp_path / "lines.safetensors")
    assert (loaded.line_channels, loaded.line_unit_px, metadata["line_channels"]) == (2, 8.0, 2)
    images = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))


# --- model files and the runtime ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DiscriminativeNet]:
    model = tiny(class_names=("stick",), delta_var=0.4, delta_dist=2.0)
    path = tmp_path_factory.mktemp("model") / "discriminative.safetensors"
    save_discriminative(path, model, {"data": "unit test"})
    return path, model


def test_model_file_round_trip(saved: tuple[Path, DiscriminativeNet], tmp_path: Path) -> None:
    path, model = saved
    loaded, metadata = load_discriminative(path)
    assert not loaded.training
    assert (loaded.num_classes, loaded.embedding_dim, loaded.width, loaded.coordinates, loaded.input_size,
            loaded.class_names, loaded.delta_var, loaded.delta_dist) == (1, 4, 0.25, True, SIZE, ("stick",), 0.4, 2.0)
    images = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    stored = json.loads(path.with_suffix(".json").read_text())
    assert stored == metadata and stored["format"] == FORMAT == "refine_perception.discriminative/1"

    half = tmp_path / "default.safetensors"
    save_discriminative(half, model, dtype=torch.float16)
    assert 0.45 < half.stat().st_size / path.stat().st_size < 0.55
    assert {t.dtype for t in safetensors.torch.load_file(str(half)).values() if t.is_floating_point()} == {
        torch.float16}
    predictor, _ = InstancePredictor.from_file(half)
    assert predictor.decoder == MeanShiftDecoder(4, 2.0) and predictor.input_size == SIZE
    assert predictor.class_names == ("stick",) and predictor.metadata["embedding_dim"] == 4


def test_other_formats_are_refused(saved: tuple[Path, DiscriminativeNet], tmp_path: Path) -> None:
    spatial = tmp_path / "spatial.safetensors"
    save_spatial_embeddings(spatial, SpatialEmbeddingNet(1, 2, 0.25, input_size=SIZE))
    with pytest.raises(ModelFileError, match="not a refine_perception discriminative file"):
        load_discriminative(spatial)
    with pytest.raises(ModelFileError, match="a spatial-embeddings model file, not refine_perception.discriminative/1"):
        load_task_model(spatial, FORMAT)
    assert load_task_model(saved[0], (SPATIAL_FORMAT, FORMAT)).kind.name == "discriminative"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelFileError, match="not a refine_perception model file"):
        InstancePredictor.from_file(tmp_path / "foreign.safetensors")


def test_onnxruntime_equals_torch_eager(saved: tuple[Path, DiscriminativeNet], tmp_path: Path) -> None:
    path, model = saved
    network = open_network(path, RuntimeConfig("onnxruntime", "cpu", "fp32", cache_dir=tmp_path, threads=1))
    images = np.random.default_rng(3).random((2, 3, *SIZE), dtype=np.float32)
    (got,) = network(images)
    with torch.no_grad():
        want = model(torch.from_numpy(images)).numpy()
    assert network.info.name == "onnxruntime" and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)


# --- predictor ----------------------------------------------------------------------------------------

def planted_output(ids: np.ndarray, classes: dict[int, int], num_classes: int = 1, dim: int = 3,
                   seed: int = 0) -> np.ndarray:
    """A raw output (1, dim + num_classes + 1, H, W) for the id map `ids` (0 background): instance k embeds
    around its own centre (at least 3 units from the others, noise 0.1 per axis) and its class (classes[k])
    wins the logits, with probability 0.9 or 0.99 (odd or even ids) when there is one class."""
    rng = np.random.default_rng(seed)
    height, width = ids.shape
    embedding = rng.normal(0.0, 0.1, (dim, height, width)).astype(np.float32)
    logits = np.zeros((num_classes + 1, height, width), np.float32)
    logits[0] = 4.0
    for k in np.unique(ids[ids > 0]):
        centre = np.zeros(dim, np.float32)
        centre[k % dim] = 3.0 * (1 + k // dim)
        embedding[:, ids == k] += centre[:, None]
        logits[0][ids == k] = 0.0
        logits[classes[k] + 1][ids == k] = np.log(0.9 / 0.1) if k % 2 else np.log(0.99 / 0.01)
    return np.concatenate([embedding, logits])[None]


def crossed_sticks() -> np.ndarray:
    """Two sticks crossing in an X, whose boxes overlap almost entirely, and a third one apart."""
    ids = np.zeros((64, 96), np.uint8)
    cv2.line(ids, (6, 6), (58, 58), 1, 5)
    cv2.line(ids, (6, 58), (58, 6), 2, 5)  # drawn over the first where they cross
    cv2.line(ids, (75, 5), (88, 60), 3, 6)
    return ids.astype(np.int64)


def test_predictor_recovers_planted_clusters_through_resizing() -> None:
    ids = crossed_sticks()
    raw = planted_output(ids, {1: 0, 2: 0, 3: 0})
    predictor = InstancePredictor(lambda batch: np.repeat(raw, len(batch), axis=0), ids.shape, MeanShiftDecoder(3, 1.5),
                                  ("stick",))
    (found,) = predictor.clusters([np.zeros((*ids.shape, 3), np.uint8)])
    assert len(found.scores) == 3 and set(found.class_ids) == {0}
    for label in range(1, 4):
        (mine,) = {int(v) for v in np.unique(found.instance_map[ids == label])}
        np.testing.assert_array_equal(found.instance_map == mine, ids == label)
        # the class probability, discounted by size and by the spread of the planted noise (instance_scores)
        points = raw[0, :3, ids == label]
        spread = np.median(np.linalg.norm(points - points.mean(axis=0), axis=1))
        expected = (0.9 if label % 2 else 0.99) * (1 - np.exp(-(ids == label).sum() / SIZE_SCALE_PX)) * (1 - spread / 3.0)
        assert found.scores[mine - 1] == pytest.approx(expected, rel=1e-4)
    big = predictor([np.zeros((128, 192, 3), np.uint8)])[0]
    assert len(big) == 3 and all(r.mask.shape == (128, 192) and r.class_name == "stick" for r in big)
    boxes = sorted(big, key=lambda r: r.box.center_x)
    assert abs(abs(boxes[0].box.theta) - np.pi / 4) < 0.1 and abs(abs(boxes[1].box.theta) - np.pi / 4) < 0.1
    assert boxes[0].box.length > 120  # each crossed stick whole, not cut at the crossing


def test_predictor_clusters_each_class_and_respects_the_node_settings() -> None:
    ids = crossed_sticks()
    raw = planted_output(ids, {1: 1, 2: 0, 3: 1}, num_classes=2)
    decoder = MeanShiftDecoder(3, 1.5)
    (found,) = decoder(raw, ClusterSettings())
    assert list(found.class_ids) == [0, 1, 1]  # class by class, numbered on across classes
    np.testing.assert_array_equal(found.instance_map == 1, ids == 2)
    assert set(np.unique(found.instance_map[ids == 1])) | set(np.unique(found.instance_map[ids == 3])) == {2, 3}
    (limited,) = decoder(raw, ClusterSettings(max_instances=2))
    assert list(limited.class_ids) == [0, 1] and limited.instance_map.max() == 2
    (none,) = decoder(raw, ClusterSettings(min_pixels=10_000))
    assert len(none.scores) == 0 and not none.instance_map.any()
    background = raw.copy()
    background[0, 3] = 10.0  # the background logit wins everywhere
    (empty,) = decoder(background, ClusterSettings())
    assert empty.scores.dtype == np.float32 and empty.class_ids.dtype == np.int64 and len(empty.scores) == 0
