"""Synthetic road scenes: the pinhole camera model (hand-computed projections, round trips, CameraInfo
interchange), exact lane ground truth (ground points re-project onto the image points), the datasets'
conventions, sequences that keep lane ids, and the CULane / TuSimple files written to disk."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from refine_perception.core.camera import CameraModelError, PinholeCamera, clip_near
from refine_perception.data.formats.culane import CATEGORIES
from refine_perception.data.synthetic.road import (
    COLOURS,
    LANE_KINDS,
    MIN_POINTS,
    ROW_STEP,
    RoadSample,
    drive,
    preview,
    road_sample,
)
from refine_perception.data.synthetic.road_dataset import (
    TUSIMPLE_SIZE,
    generate_lane_dataset,
    tusimple_label_file,
)

K = np.array([[1000.0, 0, 820], [0, 1000, 295], [0, 0, 1]])
SMALL = (480, 172)  # CULane's aspect ratio at a size that renders in milliseconds


@cache
def sample(seed: int, index: int, category: str | None = None) -> RoadSample:
    return road_sample(seed, index, *SMALL, category=category)


# ----------------------------------------------------------------------------------- camera


def test_level_camera_projects_by_hand() -> None:
    camera = PinholeCamera(K, 1640, 590, mount_height=1.5)
    pixels, ahead = camera.project(np.array([[20.0, 0, 0], [10, 2, 0], [10, -2, 1.5], [-1, 0, 0]]))
    # 20 m ahead on the ground: cy + f * 1.5 / 20; 2 m to the left at 10 m: cx - f * 2 / 10
    np.testing.assert_allclose(pixels[:3], [[820, 370], [620, 445], [1020, 295]])
    assert ahead.tolist() == [True, True, True, False] and np.isnan(pixels[3]).all()
    assert camera.horizon_row() == 295


def test_pitch_yaw_and_roll_move_the_image_as_expected() -> None:
    pitch = np.arctan(0.1)
    pitched = PinholeCamera(K, 1640, 590, 1.5, pitch=pitch)
    assert pitched.horizon_row() == pytest.approx(295 - 100)  # looking down lifts the horizon
    below = np.arctan(1.5 / 20) - pitch  # angle of the ground point under the optical axis
    np.testing.assert_allclose(pitched.project(np.array([[20.0, 0, 0]]))[0], [[820, 295 + 1000 * np.tan(below)]])
    yaw = np.radians(3)
    turned = PinholeCamera(K, 1640, 590, 1.5, yaw=yaw)  # turned left: what is ahead moves right
    expected = [820 + 1000 * np.tan(yaw), 295 + 1000 * 1.5 / (20 * np.cos(yaw))]
    np.testing.assert_allclose(turned.project(np.array([[20.0, 0, 0]]))[0], [expected])
    roll = np.radians(2)
    rolled = PinholeCamera(K, 1640, 590, 1.5, roll=roll)  # left side up: the horizon drops on the left
    left, right = rolled.horizon_row(np.array([0.0, 1640.0]))
    assert left - right == pytest.approx(1640 * np.tan(roll))


def test_backprojection_inverts_projection_with_distortion() -> None:
    camera = PinholeCamera(K, 1640, 590, 1.7, pitch=0.04, roll=-0.02, yaw=0.03, D=[-0.25, 0.07, 0.001, -0.002, 0])
    rng = np.random.default_rng(0)
    ground = np.column_stack([rng.uniform(4, 80, 200), rng.uniform(-12, 12, 200), np.zeros(200)])
    pixels, ahead = camera.project(ground)
    assert ahead.all()
    np.testing.assert_allclose(camera.backproject(pixels), ground, atol=1e-6)
    # the other way round: pixels below the horizon come back onto themselves
    grid = np.column_stack([rng.uniform(0, 1640, 200), rng.uniform(camera.horizon_row() + 20, 590, 200)])
    np.testing.assert_allclose(camera.project(camera.backproject(grid))[0], grid, atol=1e-6)
    # and a raised plane works the same way
    raised = ground + [0, 0, 0.4]
    np.testing.assert_allclose(camera.backproject(camera.project(raised)[0], ground_z=0.4), raised, atol=1e-6)


def test_pixels_above_the_horizon_do_not_reach_the_ground() -> None:
    camera = PinholeCamera(K, 1640, 590, 1.5, pitch=0.02)
    horizon = camera.horizon_row()
    points = camera.backproject(np.array([[820, horizon - 5], [820, horizon + 5], [100, 10]]))
    assert np.isnan(points[0]).all() and np.isnan(points[2]).all() and np.isfinite(points[1]).all()


def test_camera_info_round_trip_and_bad_input() -> None:
    camera = PinholeCamera(K, 1640, 590, 1.6, pitch=0.03, roll=0.01, yaw=-0.02, D=[0.1, 0, 0, 0, 0])
    info, extrinsics = camera.camera_info(), camera.extrinsics()
    assert info["P"] == [1000.0, 0, 820, 0, 0, 1000, 295, 0, 0, 0, 1, 0] and info["distortion_model"] == "plumb_bob"
    again = PinholeCamera.from_camera_info(json.loads(json.dumps(info)), json.loads(json.dumps(extrinsics)))
    points = np.array([[15.0, 1, 0], [40, -3, 0.2]])
    np.testing.assert_allclose(again.project(points)[0], camera.project(points)[0])
    ros = {"k": K.ravel().tolist(), "d": [], "width": 1640, "height": 590}  # sensor_msgs field names
    assert PinholeCamera.from_camera_info(ros, {"mount_height": 1.5}).project(points)[1].all()
    with pytest.raises(CameraModelError, match="K has 8 values"):
        PinholeCamera(K.ravel()[:8], 1640, 590, 1.5)
    with pytest.raises(CameraModelError, match="NaN"):
        PinholeCamera(np.where(K == 1000, np.nan, K), 1640, 590, 1.5)
    with pytest.raises(CameraModelError, match="mount_height"):
        PinholeCamera(K, 1640, 590, 0.0)
    with pytest.raises(CameraModelError, match="equidistant"):
        PinholeCamera.from_camera_info(info | {"distortion_model": "equidistant"}, extrinsics)
    with pytest.raises(CameraModelError, match="mount_height"):
        PinholeCamera.from_camera_info(info, {"pitch": 0.1})
    with pytest.raises(CameraModelError, match=r"shape \(N, 3\)"):
        camera.project(np.zeros((4, 2)))


def test_polygons_are_clipped_at_the_near_plane() -> None:
    square = np.array([[-1.0, 0, 0], [1, 0, 0], [1, 0, 2], [-1, 0, 2]])  # half of it behind depth 1
    np.testing.assert_allclose(clip_near(square, 1.0), [[1, 0, 1], [1, 0, 2], [-1, 0, 2], [-1, 0, 1]])
    assert clip_near(square, 3.0).shape == (0, 3)
    np.testing.assert_array_equal(clip_near(square + [0, 0, 5], 1.0), square + [0, 0, 5])  # all in front


# ----------------------------------------------------------------------------------- single scenes


def test_same_seed_same_bytes_other_seed_other_scene() -> None:
    first, again = sample(1, 0), road_sample(1, 0, *SMALL)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.annotation() == again.annotation()
    assert first.image.dtype == np.uint8 and first.image.shape == (SMALL[1], SMALL[0], 3)
    assert not np.array_equal(sample(2, 0).image, first.image)


@pytest.mark.parametrize("index", range(12))
def test_ground_points_reproject_onto_image_points(index: int) -> None:
    s = sample(5, index)
    for lane in s.lanes:
        pixels, ahead = s.camera.project(lane.ground_points)
        assert ahead.all()
        assert np.abs(pixels - lane.image_points).max() < 0.5  # the bound; in fact ~1e-9
        np.testing.assert_allclose(pixels, lane.image_points, atol=1e-6)


def test_slopes_give_ground_points_off_the_plane_and_still_reproject() -> None:
    lanes = [lane for index in range(12) for lane in sample(5, index).lanes]
    heights = np.concatenate([np.abs(lane.ground_points[:, 2]) for lane in lanes])
    assert heights.max() > 0.3  # some roads climb or fall away from the vehicle's ground plane
    assert (heights < 1e-9).mean() > 0.2  # and others are flat


@pytest.mark.parametrize("index", range(12))
def test_lanes_follow_the_dataset_conventions(index: int) -> None:
    s = sample(5, index)
    width, height = SMALL
    assert s.category in CATEGORIES and len(s.lanes) <= 4
    slots = [lane.slot for lane in s.lanes]
    assert slots == sorted(slots) and len(set(slots)) == len(slots) and set(slots) <= {-2, -1, 1, 2}
    for lane in s.lanes:
        x, y = lane.image_points.T
        assert len(x) >= MIN_POINTS
        assert np.all(np.diff(y) == -ROW_STEP)  # bottom to top, one point per annotated row
        assert np.all((height - y) % ROW_STEP == 0) and y.max() <= height
        assert np.all((x >= 0) & (x <= width - 1) & (y >= 0))
        assert lane.kind in LANE_KINDS and lane.colour in COLOURS
        assert (lane.colour == "none") == (lane.kind == "road_edge")
    if len(s.lanes) >= 2:  # left to right: compare where two lanes share rows
        for a, b in zip(s.lanes, s.lanes[1:]):
            rows = np.intersect1d(a.image_points[:, 1], b.image_points[:, 1])
            if len(rows):
                xa = a.image_points[np.isin(a.image_points[:, 1], rows), 0]
                xb = b.image_points[np.isin(b.image_points[:, 1], rows), 0]
                assert np.all(xa < xb)


def test_the_ego_lane_is_between_its_boundaries() -> None:
    """Slots -1 and 1 lie left and right of the camera's own position on the ground."""
    for index in range(12):
        lanes = {lane.slot: lane for lane in sample(5, index).lanes}
        for slot in (-1, 1):
            if slot in lanes:
                y = lanes[slot].ground_points[0, 1]  # metres to the left, near the vehicle
                assert y * slot < 0


def test_every_category_is_reachable_and_tagged() -> None:
    drawn = {road_sample(7, index, 96, 35).category for index in range(60)}
    assert drawn == set(CATEGORIES)
    for category in CATEGORIES:
        assert sample(3, 1, category).category == category
    assert sample(3, 1, "cross").lanes == ()  # crossroads carry no lanes, as in CULane's test split
    assert sample(3, 1, "night").image.mean() < 0.6 * sample(3, 1, "normal").image.mean()
    with pytest.raises(ValueError, match="unknown category"):
        road_sample(3, 1, *SMALL, category="fog")


def test_rendered_markings_lie_on_the_ground_truth() -> None:
    """On painted solid lines the image is brighter right on the annotated points than beside them."""
    on, beside = [], []
    for index in range(16):
        s = road_sample(11, index, 960, 345, category="normal")
        grey = cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY).astype(float)
        for lane in s.lanes:
            if lane.kind not in ("solid", "double"):
                continue
            x, y = np.round(lane.image_points[lane.image_points[:, 1] < s.camera.height]).astype(int).T
            shift = np.clip(x + 12, 0, s.camera.width - 1), np.clip(x - 12, 0, s.camera.width - 1)
            on += grey[y, x].tolist()
            beside += ((grey[y, shift[0]] + grey[y, shift[1]]) / 2).tolist()
    assert len(on) > 50
    assert np.median(np.array(on) - np.array(beside)) > 25


def test_preview_tiles_scenes_with_their_lanes() -> None:
    image = preview(0, n=4, width=480, height=172)
    assert image.dtype == np.uint8 and image.shape[1] == 2 * 480 + 3 * 4 and image.shape[0] > 2 * 172


# ----------------------------------------------------------------------------------- sequences


def test_a_drive_keeps_lane_ids_and_moves_smoothly() -> None:
    frames = list(drive(3, 40, fps=10, width=480, height=172))
    assert len(frames) == 40 and {f.category for f in frames} == {frames[0].category}
    assert [f.time for f in frames] == pytest.approx(np.arange(40) / 10)
    assert all(f.camera is frames[0].camera for f in frames)
    kinds: dict[int, tuple[str, str]] = {}
    slots: dict[int, set[int]] = {}
    for f in frames:
        for lane in f.lanes:
            assert kinds.setdefault(lane.id, (lane.kind, lane.colour)) == (lane.kind, lane.colour)
            slots.setdefault(lane.id, set()).add(lane.slot)
    assert any(len(s) > 1 for s in slots.values())  # this drive changes lanes: a boundary changes side
    for a, b in zip(frames, frames[1:]):  # a boundary moves a little from one frame to the next
        for lane in a.lanes:
            other = [m for m in b.lanes if m.id == lane.id]
            if other:
                bottom = lane.image_points[0]
                match = other[0].image_points[other[0].image_points[:, 1] == bottom[1]]
                if len(match):
                    assert abs(match[0, 0] - bottom[0]) < 25
    again = list(islice(drive(3, 40, fps=10, width=480, height=172), 3))  # frames are made one by one
    assert [x.image.tobytes() for x in again] == [y.image.tobytes() for y in frames[:3]]


def test_drive_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_frames"):
        drive(0, 0)
    with pytest.raises(ValueError, match="fps"):
        drive(0, 3, fps=0)


# ----------------------------------------------------------------------------------- files


def _numbers(path: Path) -> list[np.ndarray]:
    """A tiny .lines.txt reader: one lane per non-blank line of x y pairs."""
    return [np.array(line.split(), float).reshape(-1, 2) for line in path.read_text().splitlines() if line.strip()]


def test_written_dataset_parses_in_both_layouts(tmp_path: Path) -> None:
    roots = generate_lane_dataset(tmp_path, 4, 5, split="test", workers=1, progress=False)
    culane, tusimple = roots["culane"], roots["tusimple"]
    gt = [line.split() for line in (culane / "list" / "test_gt.txt").read_text().splitlines()]
    assert len(gt) == 4 and all(len(fields) == 6 and fields[0].startswith("/") for fields in gt)
    listed = [line.strip() for line in (culane / "list" / "test.txt").read_text().splitlines()]
    assert listed == [fields[0] for fields in gt]
    by_category: dict[str, str] = {}
    for k, name in enumerate(CATEGORIES):
        for line in (culane / "list" / "test_split" / f"test{k}_{name}.txt").read_text().splitlines():
            by_category[line] = name
    assert sorted(by_category) == sorted(fields[0][1:] for fields in gt)
    for image, seg, *flags in gt:
        picture = cv2.imread(str(culane / image[1:]))
        assert picture.shape == (590, 1640, 3)
        lanes = _numbers(culane / Path(image[1:]).with_suffix(".lines.txt"))
        side = json.loads((culane / Path(image[1:]).with_suffix(".json")).read_text())
        assert side["category"] == by_category[image[1:]] and len(lanes) == sum(f == "1" for f in flags)
        present = [k for k, flag in enumerate(flags) if flag == "1"]
        assert [(-2, -1, 1, 2)[k] for k in present] == [lane["slot"] for lane in side["lanes"]]
        for points, lane in zip(lanes, side["lanes"]):
            np.testing.assert_allclose(points, lane["image_points"], atol=1e-3)
        label = cv2.imread(str(culane / seg[1:]), cv2.IMREAD_UNCHANGED)
        assert label.shape == (590, 1640) and set(np.unique(label)) == {0} | {k + 1 for k in present}
        camera = PinholeCamera.from_camera_info(side["camera_info"], side["extrinsics"])
        for lane in side["lanes"]:
            pixels = camera.project(np.array(lane["ground_points"]))[0]
            np.testing.assert_allclose(pixels, lane["image_points"], atol=0.05)
    records = [json.loads(line) for line in (tusimple / tusimple_label_file("test")).read_text().splitlines()]
    assert len(records) == 4
    for record in records:
        assert record["h_samples"] == list(range(160, 720, 10))
        assert all(len(lane) == len(record["h_samples"]) for lane in record["lanes"])
        picture = cv2.imread(str(tusimple / record["raw_file"]))
        assert picture.shape == (TUSIMPLE_SIZE[1], TUSIMPLE_SIZE[0], 3)
        side = json.loads((tusimple / Path(record["raw_file"]).with_suffix(".json")).read_text())
        assert len(record["lanes"]) == len(side["lanes"])
        for xs, lane in zip(record["lanes"], side["lanes"]):
            exact = {y: x for x, y in lane["image_points"]}
            for x, y in zip(xs, record["h_samples"]):
                assert (x == -2) == (y not in exact) or x == pytest.approx(exact[y], abs=1e-6)


@pytest.mark.slow
def test_worker_count_does_not_change_the_files(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}

    generate_lane_dataset(tmp_path / "one", 5, 9, formats=("culane",), workers=1, progress=False)
    generate_lane_dataset(tmp_path / "two", 5, 9, formats=("culane",), workers=2, progress=False)
    assert digest(tmp_path / "one") == digest(tmp_path / "two")


def test_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="formats"):
        generate_lane_dataset(tmp_path, 1, 0, formats=("llamas",), progress=False)
    with pytest.raises(ValueError, match="split"):
        generate_lane_dataset(tmp_path, 1, 0, split="../x", progress=False)
    with pytest.raises(ValueError, match="num_images"):
        generate_lane_dataset(tmp_path, -1, 0, progress=False)
