"""Lanes from image points to the road plane, and the compact polynomial that Lane.msg carries.

Ground points are in the camera's ground frame (`core.camera`: REP-103, x forward, y left, z up, origin
on the road under the camera), on the plane z = 0: exact on a flat road, stretched along x where the
road ahead rises or falls. Fits follow Lane.msg: value = sum(coeffs[i] * t**i), ascending powers, valid
for t in [t_min, t_max]; on the ground t = x and value = y (metres), in the image t = v and value = u
(pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import polynomial

from refine_perception.core.camera import PinholeCamera

MAX_RANGE = 80.0  # metres ahead; farther lane points are a few pixels from the horizon and too coarse
HORIZON_MARGIN = 1.0  # pixels below the horizon a point must lie, so that rounding cannot flip it
FIT_DEGREE = 3  # the cubic of Lane.msg: offset, heading, curvature and its rate


class LaneGeometryError(ValueError):
    """Lane points of the wrong shape or with non-finite values, or a bad parameter; says which."""


def lane_points(values: object, columns: tuple[int, ...], name: str) -> np.ndarray:
    """`values` as a finite float array (N, c) with c in `columns`, or a LaneGeometryError naming `name`."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise LaneGeometryError(f"{name} must be a numeric array, got {type(values).__name__}") from None
    if array.ndim != 2 or array.shape[1] not in columns:
        wanted = " or ".join(f"(N, {c})" for c in columns)
        raise LaneGeometryError(f"{name} must have shape {wanted}, got {array.shape}")
    if not np.isfinite(array).all():
        raise LaneGeometryError(f"{name} contains NaN or infinity")
    return array


def project_lanes(
    camera: PinholeCamera,
    lanes: Sequence[object],
    max_range: float = MAX_RANGE,
    horizon_margin: float = HORIZON_MARGIN,
) -> list[np.ndarray]:
    """Ground points (M, 3) of each lane's image points (N, 2) (pixels, x = column, y = row), in the
    input order; points at or above the horizon plus `horizon_margin` pixels, or more than `max_range`
    metres ahead (forward x), are left out. All lanes of a frame are back-projected in one call."""
    if not (np.isfinite(max_range) and max_range > 0):
        raise LaneGeometryError(f"max_range must be a positive number of metres, got {max_range}")
    if not (np.isfinite(horizon_margin) and horizon_margin >= 0):
        raise LaneGeometryError(f"horizon_margin must be >= 0 pixels, got {horizon_margin}")
    arrays = [lane_points(lane, (2,), f"lane {k}") for k, lane in enumerate(lanes)]
    pixels = np.concatenate(arrays) if arrays else np.zeros((0, 2))
    if not len(pixels):
        return [np.zeros((0, 3)) for _ in arrays]
    keep = pixels[:, 1] > np.asarray(camera.horizon_row(pixels[:, 0])) + horizon_margin
    ground = np.full((len(pixels), 3), np.nan)
    ground[keep] = camera.backproject(pixels[keep])
    keep &= np.isfinite(ground).all(axis=1) & (ground[:, 0] <= max_range)
    bounds = np.cumsum([len(a) for a in arrays])[:-1]
    return [points[kept] for points, kept in zip(np.split(ground, bounds), np.split(keep, bounds))]


@dataclass(frozen=True, eq=False)
class LaneFit:
    """value = sum(coeffs[i] * t**i) for t in [t_min, t_max]: Lane.msg's fit_coeffs, fit_t_min, fit_t_max."""

    coeffs: np.ndarray
    t_min: float
    t_max: float

    def __call__(self, t: float | np.ndarray) -> np.ndarray:
        return polynomial.polyval(np.asarray(t, dtype=np.float64), self.coeffs)


def fit_polynomial(t: np.ndarray, values: np.ndarray, max_degree: int = FIT_DEGREE) -> LaneFit | None:
    """Least-squares polynomial of `values` in `t`; None (Lane.msg's FIT_NONE) with fewer than two
    distinct t. The degree is lowered to keep at least one point more than coefficients (a line from
    two points aside), so that a short lane does not get a cubic that merely interpolates its noise."""
    t = np.asarray(t, dtype=np.float64).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    if t.shape != values.shape or not (np.isfinite(t).all() and np.isfinite(values).all()):
        raise LaneGeometryError(f"fit needs finite t and values of one length, got {t.shape} and {values.shape}")
    if max_degree < 1:
        raise LaneGeometryError(f"max_degree must be at least 1, got {max_degree}")
    distinct = len(np.unique(t))
    if distinct < 2:
        return None
    degree = min(max_degree, max(1, distinct - 2))
    # fitted on s = (t - mid) / half in [-1, 1] (well conditioned at 80 m), then expressed in t itself by
    # expanding each s**i = ((t - mid) / half)**i (what Polynomial.fit(...).convert() does, 20x faster)
    low, high = float(t.min()), float(t.max())
    mid, half = (low + high) / 2, (high - low) / 2
    scaled = polynomial.polyfit((t - mid) / half, values, degree)
    coeffs = np.zeros(degree + 1)
    power = np.array([1.0])  # coefficients in t of s**i
    step = np.array([-mid / half, 1.0 / half])
    for c in scaled:
        coeffs[: len(power)] += c * power
        power = np.convolve(power, step)
    return LaneFit(coeffs, low, high)


def fit_ground(points: object, max_degree: int = FIT_DEGREE) -> LaneFit | None:
    """Lane.msg FIT_GROUND: y (metres, left positive) as a polynomial of forward x, from points (M, 2 or 3)."""
    array = lane_points(points, (2, 3), "ground points")
    return fit_polynomial(array[:, 0], array[:, 1], max_degree)


def fit_image(points: object, max_degree: int = FIT_DEGREE) -> LaneFit | None:
    """Lane.msg FIT_IMAGE: column u as a polynomial of row v (pixels), from image points (N, 2)."""
    array = lane_points(points, (2,), "image points")
    return fit_polynomial(array[:, 1], array[:, 0], max_degree)
