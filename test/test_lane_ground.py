"""Lanes on the road plane: back-projection against the synthetic road's exact ground truth, the horizon
and range cuts, and the Lane.msg polynomial fits."""

from __future__ import annotations

import numpy as np
import pytest

from refine_perception.core.camera import PinholeCamera
from refine_perception.data.synthetic.road import RoadSample, road_sample
from refine_perception.lanes.ground import (
    HORIZON_MARGIN,
    MAX_RANGE,
    LaneGeometryError,
    fit_ground,
    fit_image,
    fit_polynomial,
    project_lanes,
)

SEED = 7  # the road stream searched for flat scenes
FLAT = 0.02  # metres: the most a "flat" scene's ground truth may leave the plane z = 0 within MAX_RANGE
NOISE = 0.5  # pixels: the rounding error of a detector's point, in both coordinates


def _height(sample: RoadSample) -> float:
    """How far the ground truth leaves the plane z = 0 within MAX_RANGE, in metres (0 without lanes)."""
    return max((np.abs(lane.ground_points[lane.ground_points[:, 0] <= MAX_RANGE, 2]).max() for lane in sample.lanes),
               default=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def scenes() -> dict[str, list[RoadSample]]:
    """The first three scenes of the stream whose road is level within FLAT (the generator tilts half
    of its roads, and there a plane is not the road), and the first one that climbs or falls 0.3 m."""
    found: dict[str, list[RoadSample]] = {"flat": [], "sloped": []}
    for index in range(40):
        sample = road_sample(SEED, index, 820, 295)
        if sample.lanes:
            kind = "flat" if _height(sample) < FLAT else "sloped" if _height(sample) > 0.3 else ""
            if kind and len(found[kind]) < (3 if kind == "flat" else 1):
                found[kind].append(sample)
        if len(found["flat"]) == 3 and found["sloped"]:
            return found
    raise AssertionError(f"the first 40 scenes lack three flat and one sloped road: {found}")


@pytest.fixture(scope="module")
def flat_scenes(scenes: dict[str, list[RoadSample]]) -> list[RoadSample]:
    return scenes["flat"]


def _at(points: np.ndarray, x: float, column: int = 1) -> float:
    """y (or z, column 2) of a lane at forward distance x, linear between its points; NaN outside them."""
    order = np.argsort(points[:, 0])
    return float(np.interp(x, points[order, 0], points[order, column], left=np.nan, right=np.nan))


def test_hand_computed_points() -> None:
    # level camera 1.5 m up, f = 1000 px: row cy + 75 is 1.5 * 1000 / 75 = 20 m ahead, and 50 px left of
    # the centre column there is 50 * 20 / 1000 = 1 m to the left (y positive)
    camera = PinholeCamera(np.array([[1000.0, 0, 640], [0, 1000, 360], [0, 0, 1]]), 1280, 720, 1.5)
    lanes = [np.array([[590.0, 435.0], [740.0, 390.0]]), np.array([[640.0, 361.5], [640.0, 360.5], [640.0, 300.0]])]
    near, far = project_lanes(camera, lanes)
    np.testing.assert_allclose(near, [[20.0, 1.0, 0.0], [50.0, -5.0, 0.0]], atol=1e-9)
    # 1000 m ahead (beyond the range), inside the 1 px horizon margin, above the horizon: all dropped
    assert far.shape == (0, 3)
    np.testing.assert_allclose(project_lanes(camera, lanes[1:], max_range=1000.0)[0], [[1000.0, 0.0, 0.0]])


def test_exact_where_the_ray_meets_the_plane(scenes: dict[str, list[RoadSample]]) -> None:
    # the generator's points are exact, so each back-projected point is where the ray from the camera
    # c = (0, 0, h) through the true ground point g meets z = 0: c + (g - c) h / (h - g_z); on a level
    # road that is g itself, on a slope it slides along the ray, and a road rising above the camera's
    # height meets the plane behind it (those points lie above the horizon and are dropped)
    dropped = 0
    for sample in scenes["flat"] + scenes["sloped"]:
        camera, centre = sample.camera, sample.camera.position
        projected = project_lanes(camera, [lane.image_points for lane in sample.lanes])
        for lane, points in zip(sample.lanes, projected):
            truth, (u, v) = lane.ground_points, lane.image_points.T
            expected = centre + (truth - centre) * (centre[2] / (centre[2] - truth[:, 2]))[:, None]
            ahead = (truth[:, 2] < centre[2]) & (v > camera.horizon_row(u) + HORIZON_MARGIN)
            expected = expected[ahead & (expected[:, 0] <= MAX_RANGE)]
            dropped += int((~ahead).sum())
            assert points.shape == expected.shape
            np.testing.assert_allclose(points, expected, atol=1e-6)
    assert max(_height(sample) for sample in scenes["flat"]) < FLAT
    assert dropped > 0  # the sloped scene does climb past the horizon


def test_accuracy_with_pixel_noise(flat_scenes: list[RoadSample]) -> None:
    """Lateral error at fixed forward distances with every point moved by up to half a pixel.

    To first order a column error du moves a point sideways by x du / fx, and a row error dv moves it
    along its ray by dx = x^2 dv / (fy h) (h the camera height), as does a road height z (by x z / h);
    at fixed x a shift dx along the ray reads as a lateral error |y / x - dy/dx| dx (the ray's slope
    against the lane's). The tolerance is twice that bound for |du| = |dv| = 0.5 px (room for the
    second-order terms and the linear interpolation between rows); the issue's 0.1 m at 20 m is checked
    on its own."""
    rng = np.random.default_rng(0)
    errors_20 = []
    for sample in flat_scenes:
        camera = sample.camera
        fx, fy, h = camera.K[0, 0], camera.K[1, 1], camera.mount_height
        noisy = [lane.image_points + rng.uniform(-NOISE, NOISE, lane.image_points.shape) for lane in sample.lanes]
        for lane, points in zip(sample.lanes, project_lanes(camera, noisy)):
            truth = lane.ground_points
            for x in (10.0, 20.0, 40.0, 60.0):
                expected, found = _at(truth, x), _at(points, x)
                if np.isnan(expected) or np.isnan(found):
                    continue
                slope = _at(truth, x + 0.5) - _at(truth, x - 0.5)
                skew = abs(expected / x - (0.0 if np.isnan(slope) else slope))
                height = abs(_at(truth, x, 2))
                bound = 2 * (NOISE * x / fx + skew * (NOISE * x * x / (fy * h) + x * height / h))
                assert abs(found - expected) <= bound, (x, found, expected, bound)
                if x == 20.0:
                    errors_20.append(abs(found - expected))
    assert len(errors_20) >= 6
    assert max(errors_20) < 0.1


def test_horizon_and_range_cuts() -> None:
    camera = PinholeCamera(np.array([[800.0, 0, 400], [0, 800, 150], [0, 0, 1]]), 820, 295, 1.4, pitch=0.05, roll=0.03)
    columns = np.array([50.0, 400.0, 780.0])
    offsets = np.array([-5.0, 0.0, 0.5, 1.0, 1.5, 10.0])  # rows below the horizon at each column
    u = np.repeat(columns, len(offsets))
    v = camera.horizon_row(u) + np.tile(offsets, len(columns))
    lane = np.column_stack([u, v])
    kept = project_lanes(camera, [lane], max_range=1e9)[0]
    # with a 1 px margin only the rows 1.5 and 10 px below the (rolled) horizon reach the road
    assert len(kept) == 2 * len(columns)
    assert np.isfinite(kept).all() and (kept[:, 0] > 0).all()
    assert len(project_lanes(camera, [lane], max_range=1e9, horizon_margin=0.0)[0]) == 4 * len(columns)
    # 10 px below the horizon is 1.4 * 800 / 10 ~ 112 m ahead (roughly; the camera is pitched): beyond
    # the default range, 1.5 px is farther still
    assert project_lanes(camera, [lane])[0].shape == (0, 3)


def test_lanes_are_split_back_in_order(flat_scenes: list[RoadSample]) -> None:
    sample = flat_scenes[0]
    lanes = [lane.image_points for lane in sample.lanes]
    lanes.insert(1, np.zeros((0, 2)))
    together = project_lanes(sample.camera, lanes)
    assert len(together) == len(lanes) and together[1].shape == (0, 3)
    for lane, points in zip(lanes, together):
        np.testing.assert_array_equal(points, project_lanes(sample.camera, [lane])[0])
    assert project_lanes(sample.camera, []) == []


def test_fit_reproduces_a_cubic() -> None:
    coeffs = np.array([1.5, -0.02, 1e-3, -2e-5])
    x = np.linspace(5.0, 70.0, 25)
    y = coeffs[0] + coeffs[1] * x + coeffs[2] * x**2 + coeffs[3] * x**3
    fit = fit_ground(np.column_stack([x, y, np.zeros_like(x)]))
    assert fit is not None
    np.testing.assert_allclose(fit.coeffs, coeffs, rtol=1e-9, atol=1e-14)
    assert (fit.t_min, fit.t_max) == (5.0, 70.0)
    np.testing.assert_allclose(fit(x), y, atol=1e-9)


def test_fit_lowers_the_degree_for_few_points() -> None:
    assert fit_polynomial([3.0], [1.0]) is None
    assert fit_polynomial([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]) is None  # one distinct x: no direction
    line = fit_polynomial([0.0, 2.0], [1.0, 2.0])
    assert line is not None
    np.testing.assert_allclose(line.coeffs, [1.0, 0.5], atol=1e-12)
    # three points keep a line: least squares through (0, 0), (1, 1), (2, 0) is y = 1/3
    flat = fit_polynomial([0.0, 1.0, 2.0], [0.0, 1.0, 0.0])
    assert flat is not None
    np.testing.assert_allclose(flat.coeffs, [1 / 3, 0.0], atol=1e-12)
    degrees = [len(fit.coeffs) - 1 for n in (4, 5, 9) if (fit := fit_polynomial(np.arange(n), np.arange(n) ** 2))]
    assert degrees == [2, 3, 3]
    assert len(fit_polynomial(np.arange(9), np.arange(9), max_degree=1).coeffs) == 2


def test_fit_image_is_column_of_row() -> None:
    rows = np.arange(590.0, 290.0, -10.0)  # bottom to top, as the detector gives them
    columns = 140.0 + 0.8 * rows + 1e-3 * rows**2
    fit = fit_image(np.column_stack([columns, rows]))
    assert fit is not None
    assert (fit.t_min, fit.t_max) == (300.0, 590.0)
    np.testing.assert_allclose(fit.coeffs[:3], [140.0, 0.8, 1e-3], rtol=1e-6)
    np.testing.assert_allclose(fit(rows), columns, atol=1e-6)


def test_ground_fit_of_a_projected_lane(flat_scenes: list[RoadSample]) -> None:
    # a road's clothoid stretches are close to cubics over 80 m: the fit stays within 5 cm of the lane
    sample = flat_scenes[0]
    for points in project_lanes(sample.camera, [lane.image_points for lane in sample.lanes]):
        fit = fit_ground(points)
        assert fit is not None and len(fit.coeffs) == 4
        assert np.abs(fit(points[:, 0]) - points[:, 1]).max() < 0.05


def test_bad_input_is_named() -> None:
    camera = PinholeCamera(np.array([[800.0, 0, 400], [0, 800, 150], [0, 0, 1]]), 820, 295, 1.4)
    good = np.array([[400.0, 250.0], [405.0, 240.0]])
    with pytest.raises(LaneGeometryError, match=r"lane 1 must have shape \(N, 2\), got \(2, 3\)"):
        project_lanes(camera, [good, np.zeros((2, 3))])
    with pytest.raises(LaneGeometryError, match="lane 0 contains NaN"):
        project_lanes(camera, [np.array([[400.0, np.nan]])])
    with pytest.raises(LaneGeometryError, match="lane 0 must be a numeric array"):
        project_lanes(camera, [[[1.0, 2.0], [3.0]]])
    with pytest.raises(LaneGeometryError, match=r"shape \(N, 2\), got \(4,\)"):
        project_lanes(camera, [np.zeros(4)])
    with pytest.raises(LaneGeometryError, match="max_range"):
        project_lanes(camera, [good], max_range=float("nan"))
    with pytest.raises(LaneGeometryError, match="horizon_margin"):
        project_lanes(camera, [good], horizon_margin=-1.0)
    with pytest.raises(LaneGeometryError, match=r"ground points must have shape \(N, 2\) or \(N, 3\)"):
        fit_ground(np.zeros((5, 4)))
    with pytest.raises(LaneGeometryError, match="finite t and values of one length"):
        fit_polynomial([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(LaneGeometryError, match="finite t and values"):
        fit_polynomial([1.0, 2.0, np.inf], [1.0, 2.0, 3.0])
    with pytest.raises(LaneGeometryError, match="max_degree"):
        fit_polynomial([1.0, 2.0], [1.0, 2.0], max_degree=0)
    assert issubclass(LaneGeometryError, ValueError)
