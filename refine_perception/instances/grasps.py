"""Parallel-gripper grasps for sticks from their instance masks, without ROS.

Geometry. The camera looks straight down at a table, so a stick's top face is parallel to the image
plane and its silhouette is a capsule in pixels (a band with half-disc ends), a scaled copy of the rod
seen from above. The stick's axis is the mask's principal axis; its width in pixels comes from the
spread of the pixels across that axis (a band of width w has variance w^2 / 12 across it; adding the
1 / 12 of a pixel grid, Sheppard's correction, makes the estimate hold for bands along the grid as well
as across it). The grasp is at the middle of the axis's visible part (of its longest piece when the
part is split), so the fingers close on pixels the camera sees, across the axis, approaching along the
optical axis. Metres need the depth of the top face: from a depth image where there is one (the median
over the mask), else from the known table distance assuming the stick lies on the table; the width in
pixels then fixes both the width in metres and the top's height. A stick resting on another one is
then taken as nearer to the table than it is, which scales its position towards the principal point
by (its height / table distance): pass a depth image when sticks are stacked.

Score: the chance that nothing lies on the stick. A stick with nothing on it shows its whole
silhouette, a full capsule; whatever lies on it removes pixels from that capsule: a stick across the
middle cuts a band out of it (and splits the visible part in two), one across an end replaces a round
end by a straight cut, which the smallest capsule containing the mask must extend past by a half disc
of hidden pixels. The score is therefore the visible fraction of the smallest capsule (on the fitted
axis and radius) that contains the mask, raised to `visibility_power` so that the few percent lost to
the pixel grid or to mask noise cost little and a crossing band costs a lot, times `split_factor` per
extra piece: a straight rigid rod shows two pieces only when something crosses it. On rendered scenes
(320x240) the fraction is 0.97 or more for 95 % of free sticks and below 0.9 for three quarters of the
covered ones, 84 % of which are also split; a free stick outscores a covered one of the same scene
in about 99 % of the pairs (95 % at 160x120, where a stick is 2 to 5 pixels wide). The weak case is a
cover of one end only: the half disc is a few percent of the capsule (a score near 0.75, not near 1);
scoring the end caps on their own did not separate better, their few pixels being as noisy as the
signal. The masks of the neighbours were not used: a stick lying on another touches it as much as one
lying under it, so contact does not say which is on top. A ragged mask lowers the score of a free
stick, an error on the safe side (the stick is left for later).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from refine_perception.instances.result import Grasp, InstanceResult

APPROACH = (0.0, 0.0, 1.0)  # along the optical axis, into the scene: straight down at the table


@dataclass(frozen=True)
class GraspSettings:
    """Parameters of `add_grasps`; the score's were chosen on rendered scenes (module docstring)."""

    margin_m: float = 0.01  # added to the stick's width for the gripper's opening
    min_pixels: int = 20  # smaller masks get no grasp
    min_elongation: float = 2.0  # length / width below which a mask is not a stick
    visibility_power: float = 8.0
    split_factor: float = 0.25  # score factor per visible piece beyond the first
    min_piece_fraction: float = 0.05  # pieces smaller than this fraction of the mask are specks, not pieces

    def __post_init__(self) -> None:
        checks = {
            "margin_m": self.margin_m >= 0,
            "min_pixels": self.min_pixels >= 3,
            "min_elongation": self.min_elongation >= 1,
            "visibility_power": self.visibility_power > 0,
            "split_factor": 0 <= self.split_factor <= 1,
            "min_piece_fraction": 0 <= self.min_piece_fraction < 1,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid grasp settings: {', '.join(bad)}")


@dataclass(frozen=True)
class StickFit:
    """A mask seen as a stick, in pixels: where to grasp (on the axis, middle of the longest visible
    piece), the axis direction (unit, x >= 0), the radius, the visible fraction of the smallest capsule
    containing the mask and the number of visible pieces."""

    grasp_px: tuple[float, float]
    direction: tuple[float, float]
    radius_px: float
    visible_fraction: float
    pieces: int


def fit_stick(mask: np.ndarray, settings: GraspSettings = GraspSettings()) -> StickFit | None:
    """The stick fit of a bool mask, None when it is too small, not elongated or only specks."""
    rows, cols = np.nonzero(mask)
    if rows.size < settings.min_pixels:
        return None
    points = np.stack([cols, rows], axis=1).astype(np.float64)
    centre = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((points - centre).T))
    direction = vectors[:, 1] if vectors[0, 1] > 0 or (vectors[0, 1] == 0 and vectors[1, 1] > 0) else -vectors[:, 1]
    normal = np.array([-direction[1], direction[0]])
    along, across = (points - centre) @ direction, (points - centre) @ normal
    radius = math.sqrt(3 * across.var() + 0.25)
    # the smallest segment whose capsule holds every pixel: a pixel at (a, b) needs the segment to
    # reach a -+ sqrt(r^2 - b^2)
    reach = np.sqrt(np.maximum(radius**2 - across**2, 0))
    start, end = min((along + reach).min(), 0.0), max((along - reach).max(), 0.0)
    if end - start + 2 * radius < settings.min_elongation * 2 * radius:
        return None

    height, width = mask.shape
    pad = math.ceil(radius) + 2
    x0, y0 = max(int(cols.min()) - pad, 0), max(int(rows.min()) - pad, 0)
    x1, y1 = min(int(cols.max()) + pad + 1, width), min(int(rows.max()) + pad + 1, height)
    crop = mask[y0:y1, x0:x1]
    v, u = np.mgrid[y0:y1, x0:x1]
    a = (u - centre[0]) * direction[0] + (v - centre[1]) * direction[1]
    b = (u - centre[0]) * normal[0] + (v - centre[1]) * normal[1]
    capsule = (a - np.clip(a, start, end)) ** 2 + b**2 <= radius**2
    fraction = np.count_nonzero(capsule & crop) / max(np.count_nonzero(capsule), 1)

    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop.astype(np.uint8), connectivity=8)
    pieces = [k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= settings.min_piece_fraction * rows.size]
    piece_of = labels[rows - y0, cols - x0]
    spans = [(along[piece_of == k].min(), along[piece_of == k].max()) for k in pieces]
    if not spans:
        return None
    low, high = max(spans, key=lambda span: span[1] - span[0])
    grasp = centre + direction * (low + high) / 2
    return StickFit((float(grasp[0]), float(grasp[1])), (float(direction[0]), float(direction[1])), radius,
                    float(fraction), len(pieces))


def grasp_score(fit: StickFit, settings: GraspSettings = GraspSettings()) -> float:
    """The module's estimate that nothing lies on the stick (see the module docstring)."""
    return float(fit.visible_fraction**settings.visibility_power * settings.split_factor ** (fit.pieces - 1))


def _median_depth(depth: np.ndarray, mask: np.ndarray) -> float | None:
    """Median of the valid (finite, > 0) depths over the mask, None without any."""
    values = depth[mask]
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if values.size else None


def _check_camera(K: np.ndarray, table_distance_m: float) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a finite 3x3 camera matrix with fx, fy > 0, got {K.tolist()}")
    if not (math.isfinite(table_distance_m) and table_distance_m > 0):
        raise ValueError(f"table_distance_m must be a positive distance, got {table_distance_m}")
    return K


def add_grasps(
    results: Sequence[InstanceResult],
    K: np.ndarray,
    table_distance_m: float,
    settings: GraspSettings = GraspSettings(),
    depth: np.ndarray | None = None,
) -> list[InstanceResult]:
    """Copies of `results` with `grasp` set from each mask (None where the mask is not a stick), in the
    camera optical frame. A stick's top face is at the median of `depth` (metres along the optical axis,
    the masks' size; 0 or non-finite where unknown) over its pixels; without depth there, the stick is
    taken to lie on the table, `table_distance_m` along the optical axis."""
    K = _check_camera(K, table_distance_m)
    f = math.sqrt(K[0, 0] * K[1, 1])
    out = []
    for index, result in enumerate(results):
        mask = np.asarray(result.mask)
        if mask.dtype != bool or mask.ndim != 2:
            raise ValueError(f"instance {index}: mask must be a 2-D bool array, got {mask.dtype} {mask.shape}")
        if depth is not None and np.shape(depth) != mask.shape:
            raise ValueError(f"depth is {np.shape(depth)} but instance {index}'s mask is {mask.shape}")
        fit = fit_stick(mask, settings)
        if fit is None:
            out.append(dataclasses.replace(result, grasp=None))
            continue
        width_px = 2 * fit.radius_px
        top = None if depth is None else _median_depth(depth, mask)
        if top is not None:
            width_m = width_px * top / f
        else:  # lying on the table: width_m = width_px * (table - width_m) / f
            width_m = width_px * table_distance_m / (f + width_px)
            top = table_distance_m - width_m
        u, v = fit.grasp_px
        position = ((u - K[0, 2]) * top / K[0, 0], (v - K[1, 2]) * top / K[1, 1], top + width_m / 2)
        closing = (-fit.direction[1], fit.direction[0], 0.0)
        grasp = Grasp(position, closing, APPROACH, width_m + settings.margin_m, grasp_score(fit, settings))
        out.append(dataclasses.replace(result, grasp=grasp))
    return out
