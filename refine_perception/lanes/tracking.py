"""Stable lane ids across frames, so that a consumer can follow one boundary over time.

Each track keeps its lane sampled on a fixed grid: lateral offset y at fixed forward stations x on the
ground, and column u at fixed rows v in the image (NaN where the lane was not seen). A frame's lanes are
matched to the tracks by the Hungarian algorithm on the mean gap between the two profiles over the
range both cover, in metres on the ground when every lane and track has ground points, else in pixels;
pairs farther apart than the gate are not matched. The ground is preferred because there a boundary
stays put while the ego vehicle drives along it, whereas in the image the lanes fan out and shift with
the camera's pose.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from refine_perception.lanes.ground import LaneGeometryError, lane_points

# metres ahead, spaced in proportion to the range: pixel noise and a change of heading move a lane
# laterally in proportion to x, so equal weight per log-distance keeps the far end from dominating
STATIONS = np.geomspace(3.0, 60.0, 40)
ROWS = np.arange(0.0, 4320.5, 10.0)  # every 10th row of images up to 4320 rows (8K)


@dataclass
class Track:
    """One lane followed over frames: its smoothed profiles (None: no ground profile yet) and how many
    consecutive frames it has gone unseen."""

    id: int
    image: np.ndarray
    ground: np.ndarray | None
    missed: int = 0


def _profiles(lanes: Sequence[np.ndarray], grid: np.ndarray, along: int, across: int) -> np.ndarray:
    """(L, len(grid)) values of column `across` at grid positions of column `along`, linear between a
    lane's points and NaN beyond its ends."""
    out = np.full((len(lanes), len(grid)), np.nan)
    for k, lane in enumerate(lanes):
        if len(lane):
            order = np.argsort(lane[:, along], kind="stable")
            out[k] = np.interp(grid, lane[order, along], lane[order, across], left=np.nan, right=np.nan)
    return out


def mean_gap(tracks: np.ndarray, lanes: np.ndarray, min_shared: int) -> np.ndarray:
    """(T, L) mean absolute difference of profiles (T, K) and (L, K) over the grid positions both cover;
    inf for pairs sharing fewer than `min_shared` positions."""
    gaps = np.abs(tracks[:, None, :] - lanes[None, :, :])
    shared = np.isfinite(gaps)
    count = shared.sum(axis=2)
    total = np.where(shared, gaps, 0.0).sum(axis=2)
    return np.where(count >= min_shared, total / np.maximum(count, 1), np.inf)


class LaneTracker:
    """Assigns track ids to each frame's lanes.

    `smoothing` is the weight of a new observation in a track's profiles (1: no smoothing). A track
    missed in a frame keeps its id for up to `max_missed` consecutive frames, then ends; ids are never
    reused. Gates are in metres (`ground_gate`) and pixels (`image_gate`, for the image size in use).
    """

    def __init__(
        self,
        max_missed: int = 2,
        smoothing: float = 0.7,
        ground_gate: float = 1.5,
        image_gate: float = 40.0,
        min_shared: int = 3,
        stations: np.ndarray = STATIONS,
        rows: np.ndarray = ROWS,
    ) -> None:
        self.configure(max_missed, smoothing)
        if not (ground_gate > 0 and image_gate > 0):
            raise LaneGeometryError(f"gates must be positive, got {ground_gate} m and {image_gate} px")
        if min_shared < 1:
            raise LaneGeometryError(f"min_shared must be at least 1, got {min_shared}")
        self.ground_gate = ground_gate
        self.image_gate = image_gate
        self.min_shared = min_shared
        self.stations = np.asarray(stations, dtype=np.float64)
        self.rows = np.asarray(rows, dtype=np.float64)
        self._tracks: list[Track] = []
        self._ids = itertools.count()

    def configure(self, max_missed: int, smoothing: float) -> None:
        """Change how long tracks live and how much they smooth (node parameters may change at run time);
        the tracks already followed keep their ids."""
        if max_missed < 0:
            raise LaneGeometryError(f"max_missed must be >= 0, got {max_missed}")
        if not 0 < smoothing <= 1:
            raise LaneGeometryError(f"smoothing must be in (0, 1], got {smoothing}")
        self.max_missed = max_missed
        self.smoothing = smoothing

    def reset(self) -> None:
        """Drop every track; ids go on counting, so none is ever given to two lanes."""
        self._tracks = []

    @property
    def tracks(self) -> tuple[Track, ...]:
        return tuple(self._tracks)

    def update(self, image_lanes: Sequence[object], ground_lanes: Sequence[object] | None = None) -> list[int]:
        """Track ids of this frame's lanes, in their order: image points (N, 2) per lane, and optionally
        the same lanes' ground points (M, 2 or 3), e.g. from `ground.project_lanes` (a lane's may be
        empty); the ground is used for matching once every lane and track has some."""
        image = _profiles(
            [lane_points(lane, (2,), f"image lane {k}") for k, lane in enumerate(image_lanes)], self.rows, 1, 0
        )
        ground = None
        if ground_lanes is not None:
            if len(ground_lanes) != len(image_lanes):
                raise LaneGeometryError(f"{len(ground_lanes)} ground lanes for {len(image_lanes)} image lanes")
            ground = _profiles(
                [lane_points(lane, (2, 3), f"ground lane {k}") for k, lane in enumerate(ground_lanes)],
                self.stations, 0, 1,
            )  # fmt: skip
        on_ground = (
            ground is not None
            and np.isfinite(ground).any(axis=1).all()
            and all(track.ground is not None and np.isfinite(track.ground).any() for track in self._tracks)
        )
        if on_ground:
            previous, current, gate = [t.ground for t in self._tracks], ground, self.ground_gate
        else:
            previous, current, gate = [t.image for t in self._tracks], image, self.image_gate
        cost = mean_gap(np.array(previous).reshape(-1, current.shape[1]), current, self.min_shared)
        allowed = cost <= gate
        # a forbidden pair costs more than any full set of allowed ones, so the most pairs are matched first
        forbidden = gate * (min(cost.shape) + 1) + 1.0
        track_index, lane_index = linear_sum_assignment(np.where(allowed, cost, forbidden))
        matched = {int(k): int(t) for t, k in zip(track_index, lane_index) if allowed[t, k]}

        ids = []
        for k in range(len(image)):
            if k in matched:
                track = self._tracks[matched[k]]
                track.image = self._blend(track.image, image[k])
                track.ground = None if ground is None else self._blend(track.ground, ground[k])
                track.missed = 0
            else:
                track = Track(next(self._ids), image[k], None if ground is None else ground[k])
                self._tracks.append(track)
            ids.append(track.id)
        seen = set(ids)
        for track in self._tracks:
            if track.id not in seen:
                track.missed += 1
                if ground is None:
                    track.ground = None
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return ids

    def _blend(self, old: np.ndarray | None, new: np.ndarray) -> np.ndarray:
        """Exponential smoothing where both cover the grid; the new observation alone elsewhere, so a
        track's extent follows the lane's."""
        if old is None:
            return new.copy()
        return np.where(np.isfinite(old), self.smoothing * new + (1 - self.smoothing) * old, new)
