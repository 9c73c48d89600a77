"""Pick-and-place sticks: the ground truth agrees with itself (masks, depth, stacking order, axes) and
with what is written to disk."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from refine_perception.core.calibration import Calibration
from refine_perception.data.synthetic import sticks as sticks_module
from refine_perception.data.synthetic.sticks import (
    MAX_STICKS,
    MIN_STICKS,
    Stick,
    SticksScene,
    generate_sticks_dataset,
    preview_sticks,
    render_sticks,
)

SIZE = (320, 240)
SEEDS = range(6)

# pycocotools 2.0.11 still calls numpy's __array__ the pre-2.0 way
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.mask")


@cache
def scene(seed: int) -> SticksScene:
    return render_sticks(seed, *SIZE)


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    again = render_sticks(3, *SIZE)
    first = scene(3)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.depth, again.depth)
    np.testing.assert_array_equal(first.instance_map, again.instance_map)
    assert first.sticks == again.sticks
    assert not np.array_equal(scene(4).image, first.image)


@pytest.mark.parametrize("seed", SEEDS)
def test_depth_agrees_with_masks(seed: int) -> None:
    s = scene(seed)
    assert MIN_STICKS <= len(s.sticks) <= MAX_STICKS
    assert s.depth.dtype == np.float32 and s.depth.shape == SIZE[::-1]
    for k, stick in enumerate(s.sticks):  # every visible stick pixel lies on that stick's top
        np.testing.assert_allclose(s.depth[s.instance_map == k], s.camera_height - stick.top, atol=1e-6)
    np.testing.assert_allclose(s.depth[s.instance_map < 0], s.camera_height, atol=1e-6)  # the table elsewhere
    # and the depth is the nearest of all surfaces over a pixel (a z-buffer of the full silhouettes)
    tops = np.array([st.top for st in s.sticks])
    highest = np.max(s.full_masks * tops[:, None, None], axis=0, initial=0.0)
    np.testing.assert_allclose(s.depth, s.camera_height - highest, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_occlusion_order_is_consistent_with_masks(seed: int) -> None:
    s = scene(seed)
    count = len(s.sticks)
    # sticks are listed bottom first: a pixel shows the last stick whose silhouette covers it
    covering = s.full_masks * np.arange(1, count + 1)[:, None, None]
    np.testing.assert_array_equal(s.instance_map, covering.max(axis=0) - 1)
    visible = s.visible_masks()
    assert not (visible & ~s.full_masks).any()
    for k in range(count):
        for j in range(count):
            if (s.full_masks[k] & s.full_masks[j]).any() and k > j:
                assert not (visible[j] & s.full_masks[k]).any()  # the upper one hides the lower
            if s.covers[k, j]:
                assert k > j and s.sticks[k].top > s.sticks[j].top
    np.testing.assert_array_equal(s.free, ~s.covers.any(axis=0))
    assert s.free[-1]  # nothing lies on the top of the stack


def test_stacked_sticks_rest_on_a_lower_one() -> None:
    stacked = 0
    for seed in SEEDS:
        s = scene(seed)
        for k, stick in enumerate(s.sticks):
            if stick.bottom > 0:
                stacked += 1
                supports = [j for j in range(k) if s.covers[k, j] and np.isclose(s.sticks[j].top, stick.bottom)]
                assert supports, f"seed {seed}: stick {k} floats"
    assert stacked > 0  # the seeds do contain piles


@pytest.mark.parametrize("seed", SEEDS)
def test_axis_matches_the_full_silhouette(seed: int) -> None:
    s = scene(seed)
    for k in range(len(s.sticks)):
        axis = s.image_axis(k)
        ys, xs = np.nonzero(s.full_masks[k])
        points = np.column_stack([xs, ys]).astype(float)
        np.testing.assert_allclose(points.mean(axis=0), axis["centre"], atol=0.6)
        direction = np.array([np.cos(axis["angle"]), np.sin(axis["angle"])])
        along = (points - axis["centre"]) @ direction
        across = (points - axis["centre"]) @ np.array([-direction[1], direction[0]])
        assert abs(np.ptp(along) + 1 - axis["length"]) < 2.0
        assert abs(np.ptp(across) + 1 - axis["width"]) < 2.0
        assert np.abs(across).max() <= axis["width"] / 2 + 0.75  # the silhouette hugs the axis


def test_image_axis_by_hand() -> None:
    """f = 500, principal point (320, 240), camera 0.6 m above the table, a 2 cm rod lying on a 1 cm one:
    its top at 0.03 m is 0.57 m from the camera, so 1 m there spans 500 / 0.57 = 877.19 px."""
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    stick = Stick((0.1, -0.05), (0.6, 0.8), 0.2, 0.02, 0.01)
    dummy = np.zeros((1, 1))
    fake = SticksScene(dummy, dummy, dummy, dummy, (stick,), dummy, Calibration.pinhole(640, 480, K), 0.6)
    axis = fake.image_axis(0)
    np.testing.assert_allclose(axis["centre"], [320 + 87.719, 240 - 43.860], atol=1e-3)
    assert axis["length"] == pytest.approx(175.439, abs=1e-3)
    assert axis["width"] == pytest.approx(17.544, abs=1e-3)
    assert axis["angle"] == pytest.approx(np.arctan2(0.8, 0.6))


def test_segment_distance_by_hand() -> None:
    distance = sticks_module._segment_distance
    a, b = np.array([0.0, 0.0]), np.array([2.0, 0.0])
    assert distance(a, b, np.array([1.0, -1.0]), np.array([1.0, 1.0])) == 0.0  # crossing
    assert distance(a, b, np.array([0.0, 1.0]), np.array([2.0, 1.0])) == pytest.approx(1.0)  # parallel
    assert distance(a, b, np.array([3.0, 4.0]), np.array([3.0, 9.0])) == pytest.approx(np.hypot(1, 4))  # corner


def test_dataset_on_disk_matches_the_scenes(tmp_path: Path) -> None:
    path = generate_sticks_dataset(tmp_path, 2, seed=11, split="val", workers=1, progress=False, width=160, height=120)
    assert path == tmp_path / "val" / "annotations.json"
    api = COCO(str(path))
    doc = json.loads(path.read_text())
    for index, image in enumerate(doc["images"]):
        s = render_sticks(np.random.SeedSequence([11, index]), 160, 120)
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "val" / image["file_name"])), s.image)
        np.testing.assert_array_equal(np.load(tmp_path / "val" / image["depth_file"])["depth"], s.depth)
        stored = cv2.imread(str(tmp_path / "val" / image["instance_file"]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(stored.astype(np.int32) - 1, s.instance_map)
        np.testing.assert_allclose(image["camera"]["K"], s.camera.K)
        annotations = api.loadAnns(api.getAnnIds(imgIds=[image["id"]]))
        assert [a["level"] for a in annotations] == list(range(len(s.sticks)))
        for a, visible, stick in zip(annotations, s.visible_masks(), s.sticks):
            np.testing.assert_array_equal(api.annToMask(a).astype(bool), visible)
            assert a["free"] == bool(s.free[a["level"]])
            assert a["axis_m"]["width"] == pytest.approx(stick.width)
        full = [api.annToMask(a | {"segmentation": a["amodal_segmentation"]}) for a in annotations]
        np.testing.assert_array_equal(np.array(full, bool), s.full_masks)


def test_workers_do_not_change_the_output(tmp_path: Path) -> None:
    one = generate_sticks_dataset(tmp_path / "one", 3, 5, "train", workers=1, progress=False, width=96, height=72)
    two = generate_sticks_dataset(tmp_path / "two", 3, 5, "train", workers=2, progress=False, width=96, height=72)
    assert one.read_text() == two.read_text()
    for name in ("images/train_000002.png", "depth/train_000002.npz"):
        assert (one.parent / name).read_bytes() == (two.parent / name).read_bytes()


def test_preview_is_a_grid_of_the_samples() -> None:
    picture = preview_sticks(seed=0, count=2, width=160, height=120, tile_width=160)
    assert picture.dtype == np.uint8 and picture.shape[2] == 3
    assert picture.shape[1] == 3 * 160 + 4 * 4  # image, outlines, depth side by side
