"""Training augmentation (lane points follow the image exactly through flip and affine warp) and the lane
training data built on it (targets in label space, segmentation labels, reproducible sampling)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from refine_perception.models.clrnet.loss import LaneTargets
from refine_perception.models.clrnet.targets import encode_lanes
from refine_perception.training.augment import augment
from refine_perception.training.config import AugmentConfig, DatasetConfig
from refine_perception.training.lane_data import LaneSource, LaneTrainingSet, lane_targets

HEIGHT, WIDTH = 160, 400
OFF = AugmentConfig(flip=0.0, channel_shuffle=0.0, brightness=0.0, hue_saturation=0.0, blur=0.0, affine=0.0)


def lane_points(x_bottom: float, x_top: float, bend: float = 0.0) -> np.ndarray:
    """A gently curved lane, one point per row, bottom to top, in input pixels."""
    ys = np.arange(HEIGHT - 1, 40, -1.0)
    t = (HEIGHT - 1 - ys) / (HEIGHT - 41)
    return np.column_stack([x_bottom + (x_top - x_bottom) * t + bend * t * (1 - t), ys])


def draw(lanes: list[np.ndarray]) -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for lane in lanes:
        cv2.polylines(image, [np.round(lane * 16).astype(np.int32)], False, (255, 255, 255), 2, cv2.LINE_8, shift=4)
    return image


def bright_fraction(image: np.ndarray, lanes: list[np.ndarray]) -> float:
    """Share of the lanes' points, rounded to pixels inside the image, that fall on a bright pixel."""
    points = np.round(np.concatenate(lanes)).astype(np.int64)
    inside = (points[:, 0] >= 0) & (points[:, 0] < WIDTH) & (points[:, 1] >= 0) & (points[:, 1] < HEIGHT)
    points = points[inside]
    assert len(points) > 50
    return float((image[points[:, 1], points[:, 0]].max(axis=1) > 100).mean())


LANES = [lane_points(40, 170, 30), lane_points(330, 230, -20)]


def test_flip_moves_lanes_with_the_image_and_keeps_left_to_right() -> None:
    image = draw(LANES)
    out, lanes = augment(image, LANES, dataclasses.replace(OFF, flip=1.0), np.random.default_rng(0))
    np.testing.assert_array_equal(out, image[:, ::-1])
    assert bright_fraction(out, lanes) == 1.0
    assert len(lanes) == 2 and lanes[0][:, 0].mean() < lanes[1][:, 0].mean()
    # the first lane out is the mirror of the right lane in
    np.testing.assert_allclose(lanes[0], np.column_stack([WIDTH - 1 - LANES[1][:, 0], LANES[1][:, 1]]))


@pytest.mark.parametrize("seed", range(6))
def test_affine_moves_lanes_with_the_image(seed: int) -> None:
    image = draw(LANES)
    out, lanes = augment(image, LANES, dataclasses.replace(OFF, affine=1.0), np.random.default_rng(seed))
    assert not np.array_equal(out, image)
    assert bright_fraction(out, lanes) > 0.9
    assert bright_fraction(out, LANES) < 0.9  # the untransformed points fail the same check


def test_same_seed_same_output_other_seed_differs() -> None:
    image = draw(LANES) // 2 + np.random.default_rng(9).integers(0, 100, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    config = AugmentConfig(flip=0.5, channel_shuffle=0.5, brightness=1.0, hue_saturation=1.0, blur=1.0, affine=1.0)
    first = augment(image, LANES, config, np.random.default_rng(3))
    again = augment(image, LANES, config, np.random.default_rng(3))
    other = augment(image, LANES, config, np.random.default_rng(4))
    np.testing.assert_array_equal(first[0], again[0])
    for a, b in zip(first[1], again[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert not np.allclose(first[1][0], other[1][0])
    for out, _ in (first, other):
        assert out.dtype == np.uint8 and out.shape == image.shape and out.flags["C_CONTIGUOUS"]


def test_zero_probabilities_leave_everything_unchanged() -> None:
    image = np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    out, lanes = augment(image, LANES, OFF, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert len(lanes) == 2 and all(np.array_equal(a, b) for a, b in zip(lanes, LANES))


def test_flipped_output_is_contiguous() -> None:
    image = np.random.default_rng(2).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    out, _ = augment(image, LANES, dataclasses.replace(OFF, flip=1.0), np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == image.shape and out.flags["C_CONTIGUOUS"]


def test_lane_targets_in_label_space_with_seg_classes() -> None:
    vertical = np.array([[100.0, 160.0], [100.0, 50.0]])  # label space: x = 200 from y = 320 up to y = 100
    lanes = [vertical, np.array([[-30.0, 160.0], [-20.0, 0.0]]), LANES[0], LANES[1]]  # the second is outside
    targets = lane_targets(lanes, [0, 1, 2, 3], [2, 1, 0, -1], (HEIGHT, WIDTH), 5)
    assert isinstance(targets, LaneTargets)
    assert targets.lanes.shape == (3, 78)
    row = targets.lanes[0].numpy()
    assert row[2] == 0.0 and row[3] == pytest.approx(200) and row[5] == 49  # y_k >= 100 for k <= 48
    expected, kept = encode_lanes([lane * 2 for lane in lanes])
    assert kept.tolist() == [0, 2, 3]
    np.testing.assert_allclose(targets.lanes.numpy(), expected)
    assert targets.types.tolist() == [0, 2, 3] and targets.colors.tolist() == [2, 0, -1]
    seg = targets.seg.numpy()
    assert seg.shape == (HEIGHT, WIDTH) and np.unique(seg).tolist() == [0, 1, 2, 3]
    assert seg[100, 100] == 1 and seg[100, 0] == 0
    for cls, lane in zip((2, 3), LANES):
        x, y = np.round(lane[60]).astype(int)
        assert seg[y, x] == cls


def test_lane_targets_cap_seg_classes() -> None:
    lanes = [lane_points(x, x + 20) for x in (20, 90, 160, 230, 300)]
    targets = lane_targets(lanes, [-1] * 5, [-1] * 5, (HEIGHT, WIDTH), 3)
    assert targets.lanes.shape[0] == 5
    assert np.unique(targets.seg.numpy()).tolist() == [0, 1, 2]


SYNTHETIC = DatasetConfig(kind="synthetic", seed=5, size=3)


def test_training_set_samples() -> None:
    data = LaneTrainingSet([SYNTHETIC], (HEIGHT, WIDTH), 5)
    assert len(data) == 3
    image, targets = data[0]
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert isinstance(targets, LaneTargets) and targets.seg.shape == (HEIGHT, WIDTH)
    with pytest.raises(IndexError):
        data[3]


def test_synthetic_source_of_one_category() -> None:
    source = LaneSource(dataclasses.replace(SYNTHETIC, category="curve"))
    assert {source[i].category for i in range(len(source))} == {"curve"}


def test_augmented_samples_depend_only_on_seed_epoch_index() -> None:
    config = AugmentConfig(flip=0.5, brightness=1.0, affine=1.0)
    data = LaneTrainingSet([SYNTHETIC], (HEIGHT, WIDTH), 5, config, seed=7)
    twin = LaneTrainingSet([SYNTHETIC], (HEIGHT, WIDTH), 5, config, seed=7)
    image, targets = data[1]
    same_image, same_targets = twin[1]
    torch.testing.assert_close(image, same_image, rtol=0, atol=0)
    torch.testing.assert_close(targets.lanes, same_targets.lanes, rtol=0, atol=0)
    torch.testing.assert_close(targets.seg, same_targets.seg, rtol=0, atol=0)
    data.set_epoch(1)
    assert not torch.equal(data[1][0], image)
