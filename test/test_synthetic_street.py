"""Cityscapes-style street scenes: exact camera geometry and z-buffering on hand-computed cases, label
and instance maps that follow the Cityscapes conventions, and the written dataset read back by our
readers, cityscapesscripts and pycocotools."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.evaluation.instances2dict import instances2dict
from pycocotools.coco import COCO
from scipy import ndimage

from refine_perception.data.formats import cityscapes
from refine_perception.data.synthetic import street
from refine_perception.data.synthetic.street import StreetScene, generate_street_dataset, preview_street, render_street

SIZE = (256, 128)
SEEDS = range(4)
CLASSES = {street.ROAD, street.SIDEWALK, street.LANE_MARKING, street.BUILDING, street.VEGETATION, street.SKY,
           street.POLE, street.PERSON, street.CAR}

# pycocotools 2.0.11 still calls numpy's __array__ the pre-2.0 way
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.mask")


@cache
def scene(seed: int) -> StreetScene:
    return render_street(seed, *SIZE)


def level_canvas(height_m: float = 1.5, f: float = 100.0) -> street._Canvas:
    """A 64×48 camera at (0, 0, height_m) looking along +y, no pitch, roll or yaw."""
    K = np.array([[f, 0, 31.5], [0, f, 23.5], [0, 0, 1]])
    return street._Canvas(K, street._rotation(0, 0, 0), np.array([0, 0, height_m]), 64, 48)


def test_pitch_moves_the_horizon_by_f_tan_pitch() -> None:
    """A camera pitched down by 0.05 rad sees the horizon f·tan(0.05) = 1000 · 0.050042 px above cy."""
    R = street._rotation(0.0, 0.05, 0.0)
    far = R.T @ np.array([0.0, 1.0, 0.0])  # a direction along the street, in camera coordinates
    assert 1000 * far[1] / far[2] + 500 == pytest.approx(500 - 50.0417, abs=1e-3)
    yawed = street._rotation(0.1, 0.0, 0.0).T @ np.array([0.0, 1.0, 0.0])
    assert 1000 * yawed[0] / yawed[2] == pytest.approx(1000 * np.tan(0.1))  # yaw left moves it right


def test_ground_depth_by_hand() -> None:
    """Level camera 1.5 m up, f = 100: row v sees the road at depth 1.5 · 100 / (v - cy); beyond the
    curb the sidewalk 0.15 m higher is at 1.35 · 100 / (v - cy)."""
    canvas = level_canvas()
    layout = street._Street(lanes=2, lane_width=3.0, road_half=3.5, curb=0.15, facade=(-6, 6), end=100, parking=False)
    faces = {name: canvas.add_face(7, -1, 0, np.zeros(3)) for name in ("sky", "road", "sidewalk", "curb")}
    street._draw_ground(canvas, layout, faces)
    v = 47  # bottom row: 23.5 px below the centre
    assert canvas.depth[v, 31] == pytest.approx(1.5 * 100 / 23.5, rel=1e-6)
    assert canvas.face[v, 31] == faces["road"]
    # column 0 looks 31.5 / 100 to the left per metre of depth: the road there ends at x = -3.5 m
    row = 30  # depth 1.5 * 100 / 6.5 = 23.1 m on the road, x = -0.315 * 23.1 = -7.3 m: beyond the curb
    assert canvas.face[row, 0] == faces["sidewalk"]
    assert canvas.depth[row, 0] == pytest.approx(1.35 * 100 / 6.5, rel=1e-6)
    assert np.isinf(canvas.depth[:23]).all()  # above the horizon nothing is drawn yet


def square(y: float, half: float) -> np.ndarray:
    """A vertical square across the street at distance y, centred at camera height, facing the camera."""
    return np.array([[-half, y, 1.5 - half], [half, y, 1.5 - half], [half, y, 1.5 + half], [-half, y, 1.5 + half]])


def test_zbuffer_keeps_the_nearer_polygon_and_drops_backfaces() -> None:
    canvas = level_canvas()
    canvas.polygon(square(10.0, 1.0), 24, 0, 0, np.zeros(3))  # 10 m away, 10 px each side of the centre
    canvas.polygon(square(5.0, 0.2), 26, 1, 0, np.zeros(3))  # a smaller one in front: 4 px each side
    canvas.polygon(square(2.0, 3.0)[::-1], 11, 2, 0, np.zeros(3))  # facing away: culled
    labels = np.array([f.label for f in canvas.faces])[canvas.face]
    assert canvas.depth[23, 31] == pytest.approx(5.0) and labels[23, 31] == 26
    assert canvas.depth[23, 31 + 8] == pytest.approx(10.0) and labels[23, 31 + 8] == 24
    assert np.isinf(canvas.depth[23, 31 + 12])  # 1.2 m off the axis at 10 m: outside both
    assert 11 not in labels


def test_sphere_depth_and_silhouette_by_hand() -> None:
    """A 1 m ball 10 m straight ahead: its front is 9 m away, and its silhouette's half-width is
    f · r / sqrt(d² - r²) = 100 / sqrt(99) = 10.05 px."""
    canvas = level_canvas()
    # centred on the ray of pixel (31, 23), which is half a pixel (5 cm at 10 m) left of and above the axis
    canvas.sphere(np.array([-0.05, 10.0, 1.55]), 1.0, canvas.add_face(21, -1, 0, np.zeros(3)))
    assert canvas.depth[23, 31] == pytest.approx(9.0, abs=1e-4)
    for dv, du in ((0, 10), (0, -10), (10, 0), (-10, 0)):
        assert np.isfinite(canvas.depth[23 + dv, 31 + du])
        assert np.isinf(canvas.depth[23 + dv * 11 // 10, 31 + du * 11 // 10])
    np.testing.assert_allclose(np.linalg.norm(canvas.normal[23, 31]), 1.0, atol=1e-5)


def test_same_seed_same_scene() -> None:
    again = render_street(2, *SIZE)
    np.testing.assert_array_equal(scene(2).image, again.image)
    np.testing.assert_array_equal(scene(2).instance_ids, again.instance_ids)
    assert not np.array_equal(scene(3).image, scene(2).image)


@pytest.mark.parametrize("seed", SEEDS)
def test_maps_follow_cityscapes_conventions(seed: int) -> None:
    s = scene(seed)
    assert s.label_ids.dtype == np.uint8 and s.image.shape == (*SIZE[::-1], 3)
    assert set(np.unique(s.label_ids)) <= CLASSES
    assert street.ROAD in s.label_ids
    things = s.instance_ids >= 1000
    np.testing.assert_array_equal(np.where(things, s.instance_ids // 1000, s.instance_ids), s.label_ids)
    np.testing.assert_array_equal(things, np.isin(s.label_ids, [street.PERSON, street.CAR]))
    for class_id in (street.PERSON, street.CAR):  # k counts 0, 1, 2, ... per class
        ids = np.unique(s.instance_ids[s.instance_ids // 1000 == class_id])
        np.testing.assert_array_equal(ids, class_id * 1000 + np.arange(ids.size))


def test_instances_occlude_each_other() -> None:
    """Across a few scenes, some car or person masks touch another instance's (one hides the other)."""
    touching = 0
    for seed in SEEDS:
        instances = scene(seed).instances()
        for a in instances:
            grown = ndimage.binary_dilation(a.mask)
            touching += sum(bool((grown & b.mask).any()) for b in instances if b.instance_id != a.instance_id)
    assert touching > 0


def test_dataset_reads_back_through_cityscapes_and_coco(tmp_path: Path) -> None:
    path = generate_street_dataset(tmp_path, 2, seed=9, split="val", workers=1, progress=False, width=256, height=128)
    assert path == tmp_path / "annotations" / "instances_val.json"
    samples = cityscapes.find_samples(tmp_path, "val")
    assert [p.image.name for p in samples] == [f"synthetic_00000{i}_000000_leftImg8bit.png" for i in range(2)]
    api = COCO(str(path))
    assert {c["id"]: c["name"] for c in api.loadCats(api.getCatIds())} == {24: "person", 26: "car"}
    for index, paths in enumerate(samples):
        s = render_street(np.random.SeedSequence([9, index]), 256, 128)
        annotation = cityscapes.read_annotation(paths.label_ids, paths.instance_ids)
        np.testing.assert_array_equal(annotation.label_ids, s.label_ids)
        np.testing.assert_array_equal(annotation.instance_ids, s.instance_ids)
        image = api.loadImgs([index + 1])[0]
        assert (tmp_path / image["file_name"]) == paths.image
        annotations = api.loadAnns(api.getAnnIds(imgIds=[image["id"]]))
        instances = s.instances()
        assert [a["cityscapes_id"] for a in annotations] == [i.instance_id for i in instances]
        for a, instance in zip(annotations, instances):
            np.testing.assert_array_equal(api.annToMask(a).astype(bool), instance.mask)
            assert a["category_id"] == instance.class_id and a["iscrowd"] == 0
        # cityscapesscripts reads the instance PNG once lane marking is folded into road
        labels, ids = cityscapes.fold_lane_marking(s.label_ids), cityscapes.fold_lane_marking(s.instance_ids)
        folded = cityscapes.write_sample(tmp_path / "folded", "val", "x", index, 0, s.image, labels, ids).instance_ids
        found = instances2dict([str(folded)])[str(folded.resolve())]
        assert sorted(d["instID"] for d in found["car"] + found["person"]) == [i.instance_id for i in instances]


def test_preview_is_a_grid_of_image_and_ground_truth() -> None:
    picture = preview_street(seed=1, count=2, width=128, height=64, tile_width=128)
    assert picture.shape == (2 * 64 + 3 * 4, 2 * 128 + 3 * 4, 3)
