"""The Label Refinement Network's parts: the per-stage loss on hand-made maps, the stage outputs' shapes,
the reuse of the discriminative loss for car / person instances, the model file, the street targets and
the predictor's post-processing (upsampled stage maps, instances clustered from planted embeddings)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from refine_perception.models.discriminative.clustering import SIZE_SCALE_PX
from refine_perception.models.discriminative.loss import DiscriminativeLoss, DiscriminativeSettings
from refine_perception.models.lrn.loss import LabelRefinementLoss
from refine_perception.models.lrn.network import STAGE_STRIDES, LabelRefinementNet
from refine_perception.models.lrn.stage_loss import StageCrossEntropy, labels_at
from refine_perception.models.lrn.weights import load_lrn, save_lrn
from refine_perception.models.model_file import ModelFileError
from refine_perception.segmentation.classes import IGNORE_LABEL, STREET_CLASSES, class_lookup, label_ids_of
from refine_perception.segmentation.predict import StreetPredictor, upsampled_labels
from refine_perception.training.street_data import StreetTargets

CLASSES = ("road", "person", "car")
IDS = (7, 24, 26)


def tiny_net(**kwargs: object) -> LabelRefinementNet:
    torch.manual_seed(0)
    options = {"width": 0.125, "decoder_channels": 8, "embedding_channels": 8, "embedding_dim": 4,
               "input_size": (64, 128)} | kwargs
    return LabelRefinementNet(CLASSES, IDS, ("person", "car"), **options)  # type: ignore[arg-type]


def test_labels_at_samples_pixel_centres_and_keeps_void() -> None:
    labels = torch.arange(16).reshape(1, 4, 4)
    labels[0, 1, 1] = IGNORE_LABEL
    # a 2x reduction takes the pixel at the centre of each 2x2 block's lower-right quadrant: rows/cols 1, 3
    assert labels_at(labels, (2, 2)).tolist() == [[[IGNORE_LABEL, 7], [13, 15]]]
    assert labels_at(labels, (4, 4)) is labels


def test_stage_cross_entropy_by_hand() -> None:
    labels = torch.tensor([[[0, 1], [1, IGNORE_LABEL]]])  # 2x2, one void pixel
    fine = torch.zeros(1, 2, 2, 2)
    fine[0, 0] = torch.tensor([[2.0, 0.0], [0.0, 5.0]])  # class 0 logits; class 1 stays 0
    coarse = torch.tensor([[[[1.0]], [[0.0]]]])  # 1x1: samples the label at (1, 1), which is void
    loss = StageCrossEntropy([0.5, 2.0], [2, 1])
    total, parts = loss([coarse, fine], labels)
    # fine: pixel (0,0) label 0 logit 2 vs 0; (0,1) and (1,0) label 1 with equal logits
    expected_fine = (math.log(1 + math.exp(-2.0)) + 2 * math.log(2.0)) / 3
    assert parts["ce_s1"].item() == pytest.approx(expected_fine, rel=1e-6)
    assert parts["ce_s2"].item() == 0.0  # an all-void stage adds nothing, and no NaN
    assert total.item() == pytest.approx(2.0 * expected_fine, rel=1e-6)
    fine.requires_grad_(True)
    coarse.requires_grad_(True)
    total, _ = loss([coarse, fine], labels)
    total.backward()
    assert coarse.grad is not None and torch.equal(coarse.grad, torch.zeros_like(coarse))
    assert fine.grad is not None and fine.grad[0, :, 1, 1].abs().sum() == 0  # the void pixel


def test_stage_cross_entropy_rejects_bad_weights() -> None:
    with pytest.raises(ValueError):
        StageCrossEntropy([0.0, 0.0], [2, 1])
    with pytest.raises(ValueError):
        StageCrossEntropy([1.0], [2, 1])
    with pytest.raises(ValueError, match="expected 2 stage outputs"):
        StageCrossEntropy([1.0, 1.0], [2, 1])([torch.zeros(1, 2, 1, 1)], torch.zeros(1, 2, 2, dtype=torch.long))


def test_stage_outputs_shapes_and_sizes() -> None:
    net = tiny_net().eval()
    outputs = net(torch.rand(2, 3, 64, 128))
    assert len(outputs) == len(STAGE_STRIDES) + 1
    for logits, stride in zip(outputs, STAGE_STRIDES):
        assert logits.shape == (2, 3, 64 // stride, 128 // stride)
    assert outputs[-1].shape == (2, 4, 32, 64)
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 48, 128))
    with pytest.raises(ValueError):
        LabelRefinementNet(CLASSES, IDS, ("bicycle",))
    with pytest.raises(ValueError):
        LabelRefinementNet(CLASSES, (7, 7, 26))


def test_a_truncated_view_computes_only_its_stages() -> None:
    net = tiny_net().eval()
    images = torch.rand(1, 3, 64, 128)
    full = net(images)
    early = net.truncated(2, embedding=False)
    assert early.encoder is net.encoder and net.active_stages == 5  # shared weights, the original untouched
    outputs = early(images)
    assert len(outputs) == 2 and all(torch.equal(a, b) for a, b in zip(outputs, full[:2]))
    with_embedding = net.truncated(5, embedding=True)(images)
    assert len(with_embedding) == 6
    with pytest.raises(ValueError):
        net.truncated(0, embedding=False)


def test_refinement_stage_starts_from_the_upsampled_map() -> None:
    """With its correction zeroed, a stage returns the coarser map upsampled: refinement can only add."""
    net = tiny_net().eval()
    for stage in net.stages:
        torch.nn.init.zeros_(stage.refine[-1].weight)
        torch.nn.init.zeros_(stage.refine[-1].bias)
    outputs = net(torch.rand(1, 3, 64, 128))
    for coarse, fine in zip(outputs[:4], outputs[1:5]):
        expected = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        assert torch.allclose(fine, expected, atol=1e-6)


def test_embedding_loss_is_the_discriminative_loss_per_class() -> None:
    settings = DiscriminativeSettings()
    loss = LabelRefinementLoss([1.0] * 5, STAGE_STRIDES, settings)
    labels = torch.zeros(1, 64, 128, dtype=torch.long)
    instances = torch.zeros(1, 64, 128, dtype=torch.long)
    labels[0, 8:24, 8:40], instances[0, 8:24, 8:40] = 1, 24000  # a person
    labels[0, 30:60, 50:120], instances[0, 30:60, 50:120] = 2, 26000  # a car
    embedding = torch.zeros(1, 4, 32, 64)  # both at the same point: classes are never pushed apart
    stages = [torch.zeros(1, 3, 64 // s, 128 // s) for s in STAGE_STRIDES]
    _, parts = loss([*stages, embedding], labels, instances)
    assert parts["distance"].item() == 0.0 and parts["variance"].item() == 0.0
    # two cars at one point are pushed apart, as DiscriminativeLoss itself computes on the halved targets
    labels[0, 30:60, 50:80], instances[0, 30:60, 50:80] = 2, 26001
    embedding = torch.randn(1, 4, 32, 64)
    _, parts = loss([*stages, embedding], labels, instances)
    _, direct = DiscriminativeLoss(settings)(embedding, labels_at(instances, (32, 64)), labels_at(labels, (32, 64)))
    for name in ("variance", "distance", "regularisation"):
        assert parts[name].item() == pytest.approx(direct[name].item(), rel=1e-6)
    assert parts["distance"].item() > 0


def test_model_file_round_trip_and_tampering(tmp_path: Path) -> None:
    net = tiny_net().eval()
    path = tmp_path / "lrn.safetensors"
    save_lrn(path, net, {"note": "test"})
    loaded, metadata = load_lrn(path)
    assert metadata["class_names"] == list(CLASSES) and metadata["label_ids"] == list(IDS)
    assert metadata["instance_classes"] == ["person", "car"] and metadata["note"] == "test"
    images = torch.rand(1, 3, 64, 128)
    for a, b in zip(net(images), loaded(images)):
        assert torch.equal(a, b)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_lrn(path)


def test_street_targets_split_instance_ids() -> None:
    ids = np.array([[7, 24000, 24001, 26003], [0, 34, 11, 25]], np.uint16)  # 25 (rider) is not one of ours
    labels, instances = StreetTargets(STREET_CLASSES, ("person", "car"))(ids)
    names = list(STREET_CLASSES)
    assert labels.tolist() == [[names.index("road"), names.index("person"), names.index("person"), names.index("car")],
                               [IGNORE_LABEL, names.index("lane marking"), names.index("building"), IGNORE_LABEL]]
    assert instances.tolist() == [[0, 24000, 24001, 26003], [0, 0, 0, 0]]
    only_cars = StreetTargets(STREET_CLASSES, ("car",))(ids)[1]
    assert only_cars.tolist() == [[0, 0, 0, 26003], [0, 0, 0, 0]]
    assert class_lookup(label_ids_of(("sky",)))[23] == 0 and class_lookup((23,))[7] == IGNORE_LABEL
    with pytest.raises(ValueError, match="unknown class names"):
        label_ids_of(("pavement",))


def test_upsampled_labels_put_the_edge_between_stage_pixels() -> None:
    logits = np.zeros((2, 1, 2), np.float32)
    logits[0, 0, 0], logits[1, 0, 1] = 1.0, 1.0  # left pixel class 0, right pixel class 1
    labels = upsampled_labels(logits, (3, 8))
    assert labels.dtype == np.uint8 and labels.shape == (3, 8)
    assert labels[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_upsampled_labels_are_the_argmax_of_the_upsampled_logits() -> None:
    import cv2

    logits = np.random.default_rng(1).standard_normal((9, 12, 20)).astype(np.float32)
    logits[3, 0, 0] = logits[5, 0, 0] = 9.0  # a tie goes to the lower class, as argmax breaks it
    planes = cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), (80, 48), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(upsampled_labels(logits, (48, 80)), planes.argmax(axis=2))


def test_predictor_clusters_planted_instances() -> None:
    """Two cars side by side in the finest map, told apart only by their embeddings; a person apart."""
    header = {"input_height": 64, "input_width": 128, "class_names": list(CLASSES), "label_ids": list(IDS),
              "instance_classes": ["person", "car"], "delta_var": 0.5, "delta_dist": 1.5}
    finest = np.zeros((1, 3, 32, 64), np.float32)
    finest[0, 0] = 5.0  # road everywhere ...
    finest[0, 2, 10:20, 10:50] = 10.0  # ... but one car-coloured block
    finest[0, 1, 24:30, 55:60] = 10.0  # and a person
    embedding = np.zeros((1, 4, 32, 64), np.float32)
    embedding[0, 0, 10:20, 30:50] = 3.0  # the block's right part is a second car
    outputs = tuple(np.zeros((1, 3, 64 // s, 128 // s), np.float32) for s in STAGE_STRIDES[:-1]) + (finest, embedding)
    predictor = StreetPredictor(lambda batch: outputs, header)
    image = np.zeros((128, 256, 3), np.uint8)
    (result,) = predictor([image])
    assert [labels.shape for labels in result.stage_labels] == [(128, 256)] * 5
    cars = sorted((p for p in result.instances if p.class_id == 26), key=lambda p: int(np.nonzero(p.mask.any(0))[0][0]))
    persons = [p for p in result.instances if p.class_id == 24]
    assert len(cars) == 2 and len(persons) == 1
    # the embedding is at half the input (64x128), a quarter of the image: block rows 10:20 -> 40:80
    assert cars[0].mask[44:76, 44:116].all() and not cars[0].mask[:, 124:].any()
    assert cars[1].mask[44:76, 124:196].all() and not cars[1].mask[:, :116].any()
    assert persons[0].mask[100:116, 224:236].all() and persons[0].mask.sum() < 30 * 25
    # instance_scores: each instance's embeddings are one point, so its class probability (> 0.99) times the
    # size factor of its pixels at the embedding's resolution (cars 10x20, the person 6x5)
    for instance, pixels in ((cars[0], 200), (cars[1], 200), (persons[0], 30)):
        assert instance.score == pytest.approx(1 - np.exp(-pixels / SIZE_SCALE_PX), rel=0.01)
    (only_labels,) = predictor([image], stages=[4], instances=False)
    assert len(only_labels.stage_labels) == 1 and only_labels.instances == []
    assert np.array_equal(only_labels.stage_labels[0], result.stage_labels[4])
    with pytest.raises(ValueError, match="stages"):
        predictor([image], stages=[5])
