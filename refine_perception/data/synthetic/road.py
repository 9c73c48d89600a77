"""Road scenes with lanes, rendered from a 3-D road model, with exact lane ground truth.

Model. A road in a world frame (x, y horizontal, z up) is a centreline with a curvature profile that is
piecewise linear in arc length (clothoid transitions between straight, curved and S-curved stretches) and
a height profile z(s) (sums of long sinusoids for slopes, or flat). The road is level across its width.
Lane boundaries are parallel curves at fixed lateral offsets d from the centreline (d positive to the
left), numbered from the right edge: boundary ids 0..n for n lanes. Every position on the road surface
is (s, d), where s is the horizontal arc length of the centreline.

Camera. The ego vehicle stands on the road at (s_ego, d_ego) with the road's slope under it and heads
along the road (plus the small yaw of a lane change). Its ground frame (see `core.camera`) has x forward,
y left, z up and the origin on the road under the camera, so on a slope the road ahead rises or falls
away from z = 0. "Ground points" are 3-D points on the road surface in that frame (z is not always 0);
projecting them with the camera gives the image points exactly. Back-projecting image points onto the
plane z = 0 only recovers them on flat roads. The generator's cameras have no distortion (D = 0).

Rendering. The ground is cut into strips between stations; each strip is a plane in camera space, drawn
far to near (so the road hides itself behind crests), giving per pixel the strip and from it, by
ray-plane intersection on a half-resolution grid, the road coordinates (s, d) and depth. Everything
painted on the ground (asphalt, markings, arrows, crosswalks, shadows, wear) is then a function of (s, d)
evaluated per pixel with anti-aliasing from the pixel footprint; vehicles, lamp posts and trees are
shaded polygons that cast shadows; sky, clouds and skyline are functions of the viewing direction.

Ground truth (both datasets' conventions). The lanes of an image are the boundaries of the ego lane and
of the lane on either side: at most 4, ordered left to right in the image (CULane's slots L2 L1 R1 R2,
which the `slot` field gives as -2 -1 1 2). A boundary is annotated whether it is painted or only a
road edge (kind "road_edge", colour "none"), however worn its paint (so "noline" scenes keep their
lanes), and through vehicles standing on it, as the CULane annotators did; it ends where the road hides
itself behind a crest or at `GT_RANGE` metres. Points lie on image rows H, H-10, H-20, ... (CULane's
rows: 590, 580, ...) from the bottom up, inside the image (0 <= x <= W-1). TuSimple annotates up to 5
lanes; the same 4 are written there. In "cross" scenes the ego vehicle is at a crossroad and, as in
CULane's crossroad test split, no lanes are annotated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

from refine_perception.core.camera import PinholeCamera, clip_near
from refine_perception.data.formats.culane import CATEGORIES
from refine_perception.data.preview import grid

LANE_KINDS = ("solid", "dashed", "double", "road_edge")
COLOURS = ("white", "yellow", "none")
CATEGORY_WEIGHTS = {
    "normal": 0.22, "crowd": 0.15, "hlight": 0.07, "shadow": 0.09, "noline": 0.10,
    "arrow": 0.08, "curve": 0.11, "cross": 0.06, "night": 0.12,
}  # fmt: skip
CULANE_HORIZON = (0.40, 0.50)  # horizon row as a fraction of the height, as in CULane frames
TUSIMPLE_HORIZON = (0.31, 0.39)  # and as in TuSimple's 1280x720 frames
ROW_STEP = 10  # pixels between annotated rows
GT_RANGE = 120.0  # metres of road ahead that are annotated
MIN_POINTS = 4  # shorter lanes are left out of the ground truth

Colour = tuple[float, float, float]  # BGR, 0..1

_STEP = 0.5  # metres between samples of the road model
_NEAR, _FAR = 1.0, 400.0  # ground drawn from this far ahead of the camera to this far
_TEXEL = 0.2  # metres per texel of the top-down textures (asphalt, shadows, wear)
_TEX_ROWS, _TEX_COLS = 512, 256  # they repeat every 102.4 m along the road and span 51.2 m across
_ARROW_TEXEL = 0.03
_DASH_STYLES = ((6.0, 9.0), (3.0, 9.0), (4.0, 6.0), (2.0, 4.0))  # (painted, gap) metres




def _colour(values: np.ndarray) -> Colour:
    b, g, r = (float(v) for v in values)
    return b, g, r


# ----------------------------------------------------------------------------------- public data


@dataclass(frozen=True, eq=False)
class Lane:
    """One annotated lane boundary. `image_points` (N, 2) run bottom to top; `ground_points` (N, 3) are
    the same points on the road surface in the camera's ground frame (metres)."""

    id: int  # boundary index from the right road edge, stable over a drive
    slot: int  # -2, -1 left of the ego vehicle, 1, 2 right of it
    kind: str  # one of LANE_KINDS
    colour: str  # one of COLOURS ("none" for road edges)
    image_points: np.ndarray
    ground_points: np.ndarray


@dataclass(frozen=True, eq=False)
class RoadSample:
    image: np.ndarray  # BGR uint8
    lanes: tuple[Lane, ...]  # left to right in the image
    camera: PinholeCamera
    category: str  # one of the CULane test categories
    time: float = 0.0  # seconds since the start of a drive

    def annotation(self) -> dict[str, object]:
        """Everything but the image, as plain json-ready values."""
        return {
            "category": self.category,
            "time": self.time,
            "camera_info": self.camera.camera_info(),
            "extrinsics": self.camera.extrinsics(),
            "lanes": [
                {
                    "id": lane.id,
                    "slot": lane.slot,
                    "kind": lane.kind,
                    "colour": lane.colour,
                    "image_points": np.round(lane.image_points, 3).tolist(),
                    "ground_points": np.round(lane.ground_points, 4).tolist(),
                }
                for lane in self.lanes
            ],
        }


# ----------------------------------------------------------------------------------- road model


@dataclass(frozen=True)
class Boundary:
    id: int
    offset: float  # metres left of the centreline
    kind: str
    colour: str
    width: float  # of one painted line
    separation: float  # between the centres of the two lines of a double marking
    dash: float  # painted length of a dash
    period: float  # dash plus gap
    phase: float
    wear: float  # 0 fresh paint, 1 none left


@dataclass(frozen=True, eq=False)
class Road:
    """Centreline samples every `_STEP` metres of s, and the boundaries from right to left."""

    xy: np.ndarray
    z: np.ndarray
    heading: np.ndarray
    grade: np.ndarray
    boundaries: tuple[Boundary, ...]
    forward_lanes: int  # lanes 0 .. forward_lanes-1 (from the right) run the ego's way, the rest oncoming
    shoulders: tuple[float, float]  # paved width beyond the right / left edge boundary
    curbs: tuple[bool, bool]  # raised curb and sidewalk (else grass) beyond the right / left shoulder

    @property
    def length(self) -> float:
        return (len(self.z) - 1) * _STEP

    @property
    def offsets(self) -> np.ndarray:
        return np.array([b.offset for b in self.boundaries])

    def lane_centre(self, lane: int) -> float:
        return (self.boundaries[lane].offset + self.boundaries[lane + 1].offset) / 2

    @property
    def edges(self) -> tuple[float, float]:
        """Lateral limits of the paved surface."""
        return self.boundaries[0].offset - self.shoulders[0], self.boundaries[-1].offset + self.shoulders[1]

    def frame(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre point, tangent d/ds (with the slope) and left unit normal (horizontal) at stations s."""
        s = np.atleast_1d(np.asarray(s, dtype=np.float64))
        position = np.clip(s / _STEP, 0, len(self.z) - 1.000001)
        i = position.astype(np.int64)
        f = position - i
        xy = self.xy[i] * (1 - f)[:, None] + self.xy[i + 1] * f[:, None]
        z = self.z[i] * (1 - f) + self.z[i + 1] * f
        heading = self.heading[i] * (1 - f) + self.heading[i + 1] * f
        grade = self.grade[i] * (1 - f) + self.grade[i + 1] * f
        c, n = np.cos(heading), np.sin(heading)
        zero = np.zeros_like(c)
        return np.column_stack([xy, z]), np.column_stack([c, n, grade]), np.column_stack([-n, c, zero])

    def points(self, s: np.ndarray, offset: float | np.ndarray) -> np.ndarray:
        centre, _, normal = self.frame(s)
        return centre + np.asarray(offset, dtype=np.float64).reshape(-1, 1) * normal


def _curvature(rng: np.random.Generator, category: str, stations: np.ndarray, ego: float) -> np.ndarray:
    """Piecewise linear curvature (clothoids between knots): straight, gentle, S-curved or curvy."""
    style = "curvy" if category == "curve" else rng.choice(["straight", "gentle", "s"], p=[0.4, 0.42, 0.18])
    knots = [0.0, ego + rng.uniform(0, 30)]
    while knots[-1] < stations[-1]:
        knots.append(knots[-1] + rng.uniform(40, 120))
    sign = rng.choice([-1.0, 1.0])
    values = []
    for _ in knots:
        if style == "straight":
            values.append(rng.normal(0, 1 / 8000))
            continue
        if style == "curvy":
            magnitude = 1 / rng.uniform(60, 320)
            flip = 0.4
        else:
            magnitude = 1 / rng.uniform(450, 3000)
            flip = 0.8 if style == "s" else 0.3
        sign = -sign if rng.random() < flip else sign
        values.append(sign * magnitude)
    if category == "curve":
        values[0] = 0.0
    return np.interp(stations, knots, values)


def _grade(rng: np.random.Generator, stations: np.ndarray) -> np.ndarray:
    if rng.random() < 0.5:
        return np.zeros_like(stations)
    grade = np.zeros_like(stations)
    for _ in range(2):
        amplitude, wavelength, phase = rng.uniform([0.01, 150, 0], [0.045, 500, 2 * np.pi])
        grade += amplitude * np.sin(2 * np.pi * stations / wavelength + phase)
    return grade


def _boundaries(rng: np.random.Generator, category: str, lanes: int, two_way: bool) -> tuple[Boundary, ...]:
    widths = np.clip(rng.uniform(2.8, 4.0) + rng.normal(0, 0.12, lanes), 2.8, 4.0)
    offsets = np.concatenate([[0.0], np.cumsum(widths)])
    offsets -= offsets[-1] / 2
    painted, gap = _DASH_STYLES[rng.integers(len(_DASH_STYLES))]
    scale = rng.uniform(0.9, 1.1)
    painted, period = painted * scale, (painted + gap) * scale
    line_width = rng.uniform(0.1, 0.2)
    shared_phase = rng.uniform(0, period)
    centre = lanes - lanes // 2 if two_way else -1
    base_wear = rng.uniform(0.7, 1.0) if category == "noline" else rng.uniform(0.0, 0.3)
    out = []
    for k in range(lanes + 1):
        if k in (0, lanes):
            if rng.random() < 0.45:
                kind, colour = "road_edge", "none"
            else:
                kind = "solid"
                colour = "yellow" if k == lanes and not two_way and rng.random() < 0.3 else "white"
        elif k == centre:
            kind = rng.choice(["double", "dashed", "solid"], p=[0.6, 0.2, 0.2])
            colour = "yellow" if rng.random() < 0.8 else "white"
        else:
            kind, colour = ("dashed", "white") if rng.random() < 0.8 else ("solid", "white")
        wear = float(np.clip(base_wear + rng.normal(0, 0.1), 0, 1))
        if category == "noline" and rng.random() < 0.3:
            wear = 1.0
        phase = shared_phase if rng.random() < 0.7 else rng.uniform(0, period)
        out.append(
            Boundary(
                id=k,
                offset=float(offsets[k]),
                kind=str(kind),
                colour=str(colour),
                width=0.0 if kind == "road_edge" else line_width * (1.3 if k in (0, lanes) else 1.0),
                separation=line_width + rng.uniform(0.08, 0.2) if kind == "double" else 0.0,
                dash=painted,
                period=period,
                phase=float(phase),
                wear=wear,
            )
        )
    return tuple(out)


def _make_road(rng: np.random.Generator, category: str, length: float, ego: float) -> Road:
    lanes = int(rng.choice([2, 3, 4, 5, 6], p=[0.2, 0.3, 0.25, 0.15, 0.1]))
    two_way = (rng.random() < 0.35 or category == "hlight") and category != "arrow"
    boundaries = _boundaries(rng, category, lanes, two_way)
    stations = np.arange(int(np.ceil(length / _STEP)) + 1) * _STEP
    curvature = _curvature(rng, category, stations, ego)
    heading = np.concatenate([[0.0], np.cumsum((curvature[1:] + curvature[:-1]) / 2 * _STEP)])
    direction = np.column_stack([np.cos(heading), np.sin(heading)])
    xy = np.vstack([[0.0, 0.0], np.cumsum((direction[1:] + direction[:-1]) / 2 * _STEP, axis=0)])
    grade = _grade(rng, stations)
    z = np.concatenate([[0.0], np.cumsum((grade[1:] + grade[:-1]) / 2 * _STEP)])
    # a road edge is where the asphalt ends; a painted edge line has a shoulder beyond it
    right, left = (0.0 if b.kind == "road_edge" else rng.uniform(0.3, 2.5) for b in (boundaries[0], boundaries[-1]))
    curbs = (bool(rng.random() < 0.4), bool(rng.random() < 0.4 and not two_way))
    forward = lanes - lanes // 2 if two_way else lanes
    return Road(xy, z, heading, grade, boundaries, forward, (right, left), curbs)


# ----------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class _Vehicle:
    lane: int  # for vehicles crossing at a crossroad: 0 drives towards +d (left), 1 towards -d
    station: float  # at t = 0
    lateral: float  # offset from the lane centre
    speed: float  # m/s along the lane's direction of travel
    size: tuple[float, float, float]  # length, width, height
    truck: bool
    colour: Colour
    crossing: bool = False


@dataclass(frozen=True)
class _LaneChange:
    start: float  # seconds
    duration: float
    to_lane: int


@dataclass(frozen=True)
class _Look:
    night: bool
    ambient: float
    sun_azimuth: float  # radians, world frame
    sun_elevation: float
    shadow_depth: float  # how much a shadow darkens direct light, 0..1
    sky_top: Colour
    sky_horizon: Colour
    asphalt: Colour
    terrain: Colour
    visibility: float  # metres, for haze
    skyline: str  # trees, hills or city
    glare: bool
    lamps: bool
    lamp_period: float
    rain: float
    motion_blur: int  # blur length in pixels, 0 for none
    blur_horizontal: bool
    jpeg_quality: int  # 0: no extra compression artefacts


@dataclass(frozen=True, eq=False)
class _World:
    category: str
    road: Road
    look: _Look
    vehicles: tuple[_Vehicle, ...]
    ego_station: float
    ego_speed: float
    ego_lane: int
    ego_lateral: float
    changes: tuple[_LaneChange, ...]
    texture: np.ndarray  # (_TEX_ROWS, _TEX_COLS, 3) float32: asphalt variation, shadow, paint wear
    skyline: np.ndarray  # elevation (radians) of the background's top edge per 0.1 degree of azimuth
    clouds: np.ndarray  # cloud cover over (elevation / 0.005 rad, azimuth / 0.25 degree)
    trees: np.ndarray  # (k, 5): station, lateral offset, crown height, crown radius, brightness
    grain: np.ndarray  # fine asphalt texture, laid 6 times denser than `texture`
    arrows: tuple[tuple[int, int], ...]  # (lane, arrow shape) pairs
    arrow_station: float
    crossing: tuple[float, float] | None  # station range of a crossroad


def _look(rng: np.random.Generator, category: str) -> _Look:
    night = category == "night" or (category == "hlight" and rng.random() < 0.5)
    overcast = not night and category != "shadow" and rng.random() < 0.35
    grey = rng.uniform(0.2, 0.4)
    tint = rng.uniform(-0.04, 0.04)
    if night:
        sky_top, sky_horizon = (0.06, 0.03, 0.02), (0.12, 0.09, 0.08)
    elif overcast:
        g = rng.uniform(0.6, 0.85)
        sky_top, sky_horizon = (g, g, g * 0.97), (g + 0.08, g + 0.08, g + 0.06)
    else:
        sky_top = (rng.uniform(0.7, 0.9), rng.uniform(0.45, 0.6), rng.uniform(0.25, 0.4))
        sky_horizon = (0.92, 0.86, 0.8)
    glare = category == "hlight"
    return _Look(
        night=night,
        ambient=rng.uniform(0.02, 0.05) if night else (rng.uniform(0.75, 0.9) if overcast else rng.uniform(0.4, 0.55)),
        sun_azimuth=rng.uniform(-0.25, 0.25) if glare else (
            rng.choice([-1, 1]) * rng.uniform(0.9, 2.2) if category == "shadow" else rng.uniform(0, 2 * np.pi)
        ),
        sun_elevation=rng.uniform(0.03, 0.12) if glare else rng.uniform(0.3, 0.7 if category == "shadow" else 1.0),
        shadow_depth=0.25 if overcast else rng.uniform(0.75, 0.95),
        sky_top=sky_top,
        sky_horizon=sky_horizon,
        asphalt=(grey * (1 + tint), grey, grey * (1 - tint)),
        terrain=_colour(rng.uniform([0.12, 0.28, 0.2], [0.25, 0.45, 0.42])),
        visibility=rng.uniform(250, 900) if not overcast else rng.uniform(180, 500),
        skyline=str(rng.choice(["trees", "hills", "city"])),
        glare=glare,
        lamps=night or rng.random() < 0.3,
        lamp_period=rng.uniform(25, 40),
        rain=rng.uniform(0.3, 1.0) if rng.random() < 0.1 else 0.0,
        motion_blur=int(rng.integers(3, 10)) if rng.random() < 0.1 else 0,
        blur_horizontal=bool(rng.random() < 0.5),
        jpeg_quality=int(rng.integers(12, 45)) if rng.random() < 0.15 else 0,
    )


def _texture(rng: np.random.Generator, road: Road, look: _Look, bands: int) -> np.ndarray:
    """Tileable top-down maps over (s mod 102.4 m, d): asphalt brightness variation, shadow (`bands`
    shadows of buildings), paint survival."""
    rows, cols = _TEX_ROWS, _TEX_COLS
    bank = _noise_bank()
    variation = _shifted(rng, bank["variation"])
    # darker, oily bands where wheels run, in every lane
    d = (np.arange(cols) - cols / 2 + 0.5) * _TEXEL
    tracks = np.zeros(cols, np.float32)
    for lane in range(len(road.boundaries) - 1):
        for side in (-0.85, 0.85):
            tracks += np.exp(-(((d - road.lane_centre(lane) - side) / 0.35) ** 2)).astype(np.float32)
    variation -= rng.uniform(0.3, 0.8) * tracks
    survival = np.clip(0.5 + _shifted(rng, bank["survival"]), 0, 1)
    shadow = np.zeros((rows, cols), np.float32)
    if bands and not look.night:  # shadows of buildings or bridges: long straight-edged bands across the road
        for _ in range(bands):
            start, length, slant = rng.uniform(0, rows), rng.uniform(20, 120), rng.uniform(-1.5, 1.5)
            top = np.array([[0, start], [cols, start + slant * cols]])
            band = np.vstack([top, top[::-1] + [0, length]])
            for shift in (-rows, 0, rows):  # drawn three times so the map stays tileable
                cv2.fillPoly(shadow, [np.round((band + [0, shift]) * 16).astype(np.int32)], 1.0, cv2.LINE_8, shift=4)
    return np.dstack([variation, shadow, survival]).astype(np.float32)


@lru_cache(maxsize=1)
def _noise_bank() -> dict[str, np.ndarray]:
    """Tileable noise fields shared by all scenes, made once per process from a fixed seed. A scene
    takes them at random offsets, which looks like fresh noise and costs far less."""
    rng = np.random.default_rng(1640590)
    rows, cols = _TEX_ROWS, _TEX_COLS
    return {
        "variation": 0.6 * _noise(rng, rows, cols, 16) + 0.4 * _noise(rng, rows, cols, 4),
        "survival": 0.5 * _noise(rng, rows, cols, 4) + 0.35 * _noise(rng, rows, cols, 32),
        "grain": _noise(rng, rows, cols, 2),
        "clouds": _noise(rng, 96, 1440, 24) + 0.5 * _noise(rng, 96, 1440, 8),
    }


def _shifted(rng: np.random.Generator, field: np.ndarray, axes: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """A tileable field rolled by random offsets along `axes` (still tileable)."""
    return np.roll(field, tuple(int(rng.integers(field.shape[axis])) for axis in axes), axis=axes)


def _noise(rng: np.random.Generator, rows: int, cols: int, cell: int) -> np.ndarray:
    """Tileable smooth noise of about unit amplitude with features `cell` texels wide (`cell` divides
    both sides): a periodic coarse grid, wrapped at its borders and upsampled."""
    coarse = np.pad(rng.standard_normal((rows // cell, cols // cell)).astype(np.float32), 2, mode="wrap")
    fine = cv2.resize(coarse, (coarse.shape[1] * cell, coarse.shape[0] * cell), interpolation=cv2.INTER_CUBIC)
    return fine[2 * cell : 2 * cell + rows, 2 * cell : 2 * cell + cols]


def _skyline(rng: np.random.Generator, style: str) -> np.ndarray:
    """Elevation (radians) of the background's top edge for every 0.1 degree of azimuth."""
    azimuth = np.arange(3600)
    if style == "city":
        edges = np.sort(rng.integers(0, 3600, 150))
        heights = rng.uniform(0.008, 0.06, 150)
        return heights[np.searchsorted(edges, azimuth) % 150].astype(np.float32)
    harmonics, top = ((2, 5, 13, 40), 0.045) if style == "hills" else ((7, 31, 97, 240, 600), 0.02)
    profile = sum(
        rng.uniform(0.5, 1.0) / np.sqrt(m) * np.sin(2 * np.pi * m * azimuth / 3600 + rng.uniform(0, 2 * np.pi))
        for m in harmonics
    )
    profile = (profile - profile.min()) / (profile.max() - profile.min())
    return (top * (0.25 + 0.75 * profile)).astype(np.float32)


_PALETTE = (
    (0.92, 0.92, 0.92), (0.75, 0.75, 0.76), (0.45, 0.45, 0.46), (0.12, 0.12, 0.13), (0.1, 0.1, 0.6),
    (0.55, 0.3, 0.12), (0.2, 0.35, 0.15), (0.3, 0.5, 0.75), (0.65, 0.6, 0.55),
)  # fmt: skip


def _vehicles(
    rng: np.random.Generator,
    category: str,
    road: Road,
    ego: tuple[float, float, set[int]],
    duration: float,
    crossing: tuple[float, float] | None,
) -> tuple[_Vehicle, ...]:
    """Traffic: every lane has one speed, so vehicles of a lane never run into each other; lanes the
    ego vehicle uses move at least as fast as it, so what is ahead of it stays ahead."""
    station, speed, ego_lanes = ego
    lanes = len(road.boundaries) - 1
    stretch = speed * duration
    if category == "crowd":
        count = int(rng.integers(8, 16))
    elif category == "hlight":
        count = int(rng.integers(3, 7))
    else:
        count = int(rng.integers(0, 3)) if category == "cross" else int(rng.poisson(2.2))
    count = int(round(count * (1 + stretch / 150)))  # a drive meets more traffic
    lane_speed = [
        (speed + rng.uniform(0.5, 3)) if k in ego_lanes else rng.uniform(8, 25) if k >= road.forward_lanes
        else max(speed + rng.uniform(-6, 4), 0.0)
        for k in range(lanes)
    ]  # fmt: skip
    near = 5.0 if category == "crowd" else 8.0
    taken: list[tuple[int, float, float]] = []
    out = []
    for attempt in range(count * 3):
        if len(out) == count:
            break
        lane = int(rng.integers(lanes))
        if category == "hlight" and attempt < 4 and road.forward_lanes < lanes:  # oncoming headlights
            lane = int(rng.integers(road.forward_lanes, lanes))
        ahead = rng.uniform(near + (4 if lane in ego_lanes else 0), 130 + stretch)
        if category == "crowd" and rng.random() < 0.5:
            ahead = rng.uniform(near, 40)
        kind = rng.random()
        if kind < 0.13:
            size = (rng.uniform(8, 13), rng.uniform(2.4, 2.55), rng.uniform(3.2, 4.0))
        elif kind < 0.27:
            size = (rng.uniform(4.7, 5.4), rng.uniform(1.85, 2.05), rng.uniform(1.75, 2.2))
        else:
            size = (rng.uniform(4.1, 4.9), rng.uniform(1.7, 1.9), rng.uniform(1.35, 1.6))
        centre = station + ahead + size[0] / 2
        if any(k == lane and abs(centre - c) < (size[0] + length) / 2 + 3 for k, c, length in taken):
            continue
        if crossing and crossing[0] - 8 < centre < crossing[1] + 8:
            continue
        taken.append((lane, centre, size[0]))
        colour = _PALETTE[int(rng.integers(len(_PALETTE)))]
        out.append(_Vehicle(lane, centre, rng.normal(0, 0.2), lane_speed[lane], size, kind < 0.13, colour))
    if crossing:
        for _ in range(int(rng.integers(1, 4))):
            direction = int(rng.integers(2))
            station = crossing[0] + (0.3 + 0.4 * direction) * (crossing[1] - crossing[0])
            size = (rng.uniform(4.1, 4.9), rng.uniform(1.7, 1.9), rng.uniform(1.35, 1.6))
            colour = _PALETTE[int(rng.integers(len(_PALETTE)))]
            start, speed = rng.uniform(-30, 30), rng.uniform(3, 10)
            out.append(_Vehicle(direction, station, start, speed, size, False, colour, crossing=True))
    return tuple(out)


def _trees(rng: np.random.Generator, road: Road) -> np.ndarray:
    """Rows of roadside trees (one side or both), beyond the sidewalk where there is one."""
    spacing = rng.uniform(6, 18)
    stations = np.arange(rng.uniform(0, spacing), road.length, spacing)
    count = len(stations)
    sides = rng.choice([-1.0, 1.0], count) if rng.random() < 0.7 else np.full(count, rng.choice([-1.0, 1.0]))
    lo, hi = road.edges
    margin = np.where(sides > 0, 3.7 if road.curbs[1] else 0.8, 3.7 if road.curbs[0] else 0.8)
    lateral = np.where(sides > 0, hi, lo) + sides * (margin + rng.uniform(0.5, 5, count))
    radius = rng.uniform(1.8, 4.2, count)
    height = radius + rng.uniform(1.8, 4.5, count)
    brightness = rng.uniform(0.75, 1.25, count)
    return np.column_stack([stations + rng.uniform(-2, 2, count), lateral, height, radius, brightness])


def _next_lane(rng: np.random.Generator, lane: int, road: Road) -> int:
    """A neighbouring lane of the ego vehicle's direction."""
    if lane == 0 or (lane < road.forward_lanes - 1 and rng.random() < 0.5):
        return lane + 1
    return lane - 1


def _make_world(seed: np.random.SeedSequence, category: str | None, duration: float) -> _World:
    rng = np.random.default_rng(seed)
    if category is None:
        category = str(rng.choice(CATEGORIES, p=[CATEGORY_WEIGHTS[c] for c in CATEGORIES]))
    elif category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    speed = rng.uniform(4, 12) if category in ("crowd", "cross") else rng.uniform(12, 30)
    station = 20.0
    road = _make_road(rng, category, station + speed * duration + _FAR + 60, station)
    look = _look(rng, category)
    lane = int(rng.integers(road.forward_lanes))
    changes = []
    if road.forward_lanes > 1 and duration == 0 and rng.random() < 0.15:  # caught in a lane change
        length = rng.uniform(2.5, 5)
        changes.append(_LaneChange(-rng.uniform(0.1, 0.9) * length, length, _next_lane(rng, lane, road)))
    elif road.forward_lanes > 1:
        time, current = rng.uniform(0.5, 4), lane
        while time < duration:
            length = rng.uniform(2.5, 5)
            changes.append(_LaneChange(time, length, _next_lane(rng, current, road)))
            time, current = time + length + rng.uniform(2, 10), changes[-1].to_lane
    crossing = None
    if category == "cross":
        start = station + rng.uniform(3, 14)
        crossing = (start, start + rng.uniform(12, 26))
    ego_lanes = {lane, *(c.to_lane for c in changes)}
    vehicles = _vehicles(rng, category, road, (station, speed, ego_lanes), duration, crossing)
    trees, bands = np.zeros((0, 5)), 0
    if (category == "shadow" and rng.random() < 0.65) or (category != "shadow" and rng.random() < 0.25):
        trees = _trees(rng, road)
    elif category == "shadow" or rng.random() < 0.08:
        bands = int(rng.integers(3, 7)) if category == "shadow" else 1
    arrows: tuple[tuple[int, int], ...] = ()
    if category == "arrow" or (category in ("normal", "crowd") and rng.random() < 0.1):
        arrows = tuple((k, int(rng.integers(len(_ARROW_SHAPES)))) for k in range(road.forward_lanes))
    return _World(
        category=category,
        road=road,
        look=look,
        vehicles=vehicles,
        ego_station=station,
        ego_speed=speed,
        ego_lane=lane,
        ego_lateral=float(rng.normal(0, 0.15)),
        changes=tuple(changes),
        texture=_texture(rng, road, look, bands),
        trees=trees,
        skyline=_skyline(rng, look.skyline),
        grain=_shifted(rng, _noise_bank()["grain"]),
        clouds=np.clip(_shifted(rng, _noise_bank()["clouds"], (1,)) - rng.uniform(0.3, 1.5), 0, 1),
        arrows=arrows,
        arrow_station=station + rng.uniform(8, 30),
        crossing=crossing,
    )


# ----------------------------------------------------------------------------------- ego motion


def _ego_state(world: _World, time: float) -> tuple[float, float, float]:
    """Station, lateral offset and yaw relative to the road of the ego vehicle at `time`; a lane change
    follows a smoothstep in lateral offset, and the vehicle yaws along its path."""
    road = world.road
    lateral = road.lane_centre(world.ego_lane) + world.ego_lateral
    rate = 0.0
    current = world.ego_lane
    for change in world.changes:
        a = float(np.clip((time - change.start) / change.duration, 0, 1))
        shift = road.lane_centre(change.to_lane) - road.lane_centre(current)
        lateral += shift * a * a * (3 - 2 * a)
        rate += shift * 6 * a * (1 - a) / change.duration
        current = change.to_lane
    return world.ego_station + world.ego_speed * time, lateral, float(np.arctan2(rate, world.ego_speed))


def _pose(road: Road, station: float, lateral: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Origin and axes (columns: forward, left, up, in world coordinates) of a body standing on the
    road at (station, lateral), turned by `yaw` from the road direction and pitched with its slope."""
    centre, tangent, normal = road.frame(np.array([station]))
    heading = np.arctan2(tangent[0, 1], tangent[0, 0]) + yaw
    slope = np.arctan(tangent[0, 2])
    forward = np.array([np.cos(heading) * np.cos(slope), np.sin(heading) * np.cos(slope), np.sin(slope)])
    left = np.array([-np.sin(heading), np.cos(heading), 0.0])
    return centre[0] + lateral * normal[0], np.column_stack([forward, left, np.cross(forward, left)])


# ----------------------------------------------------------------------------------- camera


def sample_camera(
    rng: np.random.Generator, width: int = 1640, height: int = 590, horizon: tuple[float, float] = CULANE_HORIZON
) -> PinholeCamera:
    """A random dashboard camera: horizontal field of view 50-80 degrees, principal point near the
    centre, 1.2-2.2 m high, roll and yaw of a few degrees, pitch putting the horizon at a fraction of
    the height drawn from `horizon`. The draws do not depend on the size, so two sizes with the same
    generator state share the mount."""
    fov, aspect, px, py, mount, roll, yaw, level = rng.uniform(
        [np.radians(50), -0.01, -0.02, -0.03, 1.2, np.radians(-2), np.radians(-2.5), 0.0],
        [np.radians(80), 0.01, 0.02, 0.03, 2.2, np.radians(2), np.radians(2.5), 1.0],
    )
    fx = width / 2 / np.tan(fov / 2)
    fy = fx * (1 + aspect)
    cx, cy = width * (0.5 + px), height * (0.5 + py)
    row = height * (horizon[0] + level * (horizon[1] - horizon[0]))
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    return PinholeCamera(K, width, height, mount, float(np.arctan((cy - row) / fy)), roll, yaw)


# ----------------------------------------------------------------------------------- ground truth


def _slots(road: Road, lateral: float) -> list[tuple[int, int]]:
    """(boundary id, slot) of the annotated boundaries, left to right in the image."""
    right = int(np.searchsorted(road.offsets, lateral, side="right")) - 1
    wanted = ((right + 2, -2), (right + 1, -1), (right, 1), (right - 1, 2))
    return [(k, slot) for k, slot in wanted if 0 <= k < len(road.boundaries)]


@dataclass(frozen=True, eq=False)
class _Transform:
    """World to the ego vehicle's ground frame."""

    origin: np.ndarray
    axes: np.ndarray  # columns: the vehicle's forward, left and up in world coordinates

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return (points - self.origin) @ self.axes

    def direction(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.axes


def _lanes(
    world: _World, station: float, lateral: float, to_vehicle: _Transform, camera: PinholeCamera
) -> tuple[Lane, ...]:
    """The annotated boundaries, sampled exactly on the rows H, H - ROW_STEP, ...: each row is met by
    intersecting the model's boundary polyline (0.5 m segments) with the plane through the camera
    centre and that row, so every ground point projects onto its image point (the generator's cameras
    have no skew and no distortion, so rows are planes)."""
    if world.category == "cross":
        return ()
    road = world.road
    s = station + np.arange(0.5, GT_RANGE + _STEP / 2, _STEP)
    rows = np.arange(camera.height, -1, -ROW_STEP, dtype=np.float64)
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    out = []
    for k, slot in _slots(road, lateral):
        boundary = road.boundaries[k]
        ground = to_vehicle(road.points(s, boundary.offset))
        optical = camera.to_optical(ground)
        ahead = optical[:, 2] > 0.1
        if not ahead.any():
            continue
        first = int(np.argmax(ahead))
        optical, ground, ahead = optical[first:], ground[first:], ahead[first:]
        v = np.where(ahead, fy * optical[:, 1] / np.where(ahead, optical[:, 2], 1) + cy, np.inf)
        # keep the stretch that climbs the image steadily; past a crest the road hides itself
        falling = np.flatnonzero(~(np.diff(v) < 0))
        end = falling[0] + 1 if len(falling) else len(v)
        if end < 2:
            continue
        v, optical, ground = v[:end], optical[:end], ground[:end]
        j = np.searchsorted(-v, -rows, side="right") - 1
        use = (j >= 0) & (j < end - 1)
        j, r = j[use], rows[use]
        q0, dq = optical[j], optical[j + 1] - optical[j]
        lam = ((r - cy) * q0[:, 2] - fy * q0[:, 1]) / (fy * dq[:, 1] - (r - cy) * dq[:, 2])
        q = q0 + lam[:, None] * dq
        x = fx * q[:, 0] / q[:, 2] + cx
        points = ground[j] + lam[:, None] * (ground[j + 1] - ground[j])
        inside = (x >= 0) & (x <= camera.width - 1)
        run = _longest_run(inside)
        if run.stop - run.start < MIN_POINTS:
            continue
        out.append(
            Lane(k, slot, boundary.kind, boundary.colour, np.column_stack([x, r])[run], points[run])
        )
    return tuple(out)


def _longest_run(mask: np.ndarray) -> slice:
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    changes = np.flatnonzero(np.diff(padded))
    if not len(changes):
        return slice(0, 0)
    starts, stops = changes[::2], changes[1::2]
    best = int(np.argmax(stops - starts))
    return slice(int(starts[best]), int(stops[best]))


# ----------------------------------------------------------------------------------- painted shapes

_ARROW_SHAPES = ("straight", "left", "right", "straight_left", "straight_right")
_ARROW_WIDTH, _ARROW_LENGTH = 1.6, 7.5  # metres covered by one stencil


@lru_cache(maxsize=1)
def _arrow_stencils() -> np.ndarray:
    """(shapes, rows, cols) float32 coverage; rows run forward along the road, cols to the left."""
    rows, cols = int(_ARROW_LENGTH / _ARROW_TEXEL), int(_ARROW_WIDTH / _ARROW_TEXEL)
    out = np.zeros((len(_ARROW_SHAPES), rows, cols), np.uint8)

    def pixel(x: float, y: float) -> tuple[float, float]:  # metres (left, forward) -> (col, row)
        return cols / 2 + x / _ARROW_TEXEL, y / _ARROW_TEXEL

    def stroke(canvas: np.ndarray, path: list[tuple[float, float]], head: float, reach: float) -> None:
        """A 0.15 m wide shaft along `path` ending in a triangular head `reach` long, `2 * head` wide."""
        points = np.array([pixel(*p) for p in path])
        for a, b in zip(points[:-1], points[1:]):
            cv2.line(canvas, _fixed(a), _fixed(b), 255, int(round(0.15 / _ARROW_TEXEL)), cv2.LINE_AA, shift=4)
        tip, base = np.array(path[-1]), np.array(path[-2])
        direction = (tip - base) / np.linalg.norm(tip - base)
        side = np.array([-direction[1], direction[0]])
        triangle = [tip + direction * reach, tip + side * head, tip - side * head]
        cv2.fillPoly(canvas, [_fixed(np.array([pixel(*p) for p in triangle]))], 255, cv2.LINE_AA, shift=4)

    turn = [(0.0, 0.0), (0.0, 3.2), (0.2, 4.2), (0.5, 5.0)]  # bends left; mirrored for right turns
    for index, name in enumerate(_ARROW_SHAPES):
        if "straight" in name:
            stroke(out[index], [(0.0, 0.0), (0.0, 5.0)], 0.45, 2.4)
        if "left" in name:
            stroke(out[index], turn, 0.35, 1.6)
        if "right" in name:
            stroke(out[index], [(-x, y) for x, y in turn], 0.35, 1.6)
    return out.astype(np.float32) / 255


def _strip_stations() -> np.ndarray:
    """Distances ahead at which the ground is cut into strips: 0.5 m apart near the camera, growing to
    8 m far away, which keeps the planar strips within a few millimetres of the curved road."""
    out = [_NEAR]
    while out[-1] < _FAR:
        out.append(out[-1] + min(max(0.03 * out[-1], 0.5), 8.0))
    return np.array(out)


_STRIPS = _strip_stations()


def _band(x: np.ndarray, lo: float, hi: float, footprint: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of lo < x < hi for pixels `footprint` wide (same units as x)."""
    return np.clip(np.minimum(x - lo, hi - x) / footprint + 0.5, 0, 1)


# ----------------------------------------------------------------------------------- rendering


@dataclass(eq=False)
class _View:
    """One frame: the camera on the ego vehicle and, on a half-resolution grid, the road point (s, d,
    depth) each ground pixel sees. Half-resolution pixel (j, i) is centred on full-resolution (2j + 0.5,
    2i + 0.5); arrays start at the first grid row showing ground (`top`). Smooth things (texture, light,
    haze, sky) are computed on this grid; paint is computed exactly at full resolution (`exact`)."""

    world: _World
    time: float
    camera: PinholeCamera
    station: float
    to_vehicle: _Transform
    top: int
    index: np.ndarray  # strip index + 1 of each grid pixel, 0 where no ground
    planes: np.ndarray  # (strips, 12) ray-plane coefficients of the strips, see _intersect
    s: np.ndarray
    d: np.ndarray
    depth: np.ndarray
    x: np.ndarray  # (1, W / 2) normalised image x (ray x / z) of the grid columns

    @cached_property
    def optical_axes(self) -> np.ndarray:
        """World directions of the optical x, y, z axes (columns)."""
        return self.to_vehicle.axes @ self.camera.R

    @cached_property
    def _offset(self) -> np.ndarray:
        return self.to_vehicle.origin @ self.optical_axes + self.camera.position @ self.camera.R

    def optical(self, points: np.ndarray) -> np.ndarray:
        """World points in the optical frame."""
        return points @ self.optical_axes - self._offset

    def exact(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, d, depth) at full-resolution pixels, each on the strip of its grid pixel."""
        K = self.camera.K
        strip = self.index[rows // 2 - self.top, cols // 2]
        coefficients = self.planes.T[:, np.where(strip > 0, strip - 1, len(self.planes) - 1)]
        x = ((cols - K[0, 2]) / K[0, 0]).astype(np.float32)
        y = ((rows - K[1, 2]) / K[1, 1]).astype(np.float32)
        return _intersect(coefficients, x, y)


def _half_axis(count: int, centre: float, focal: float, start: int = 0) -> np.ndarray:
    """Normalised coordinates of the half-resolution pixel centres along one image axis."""
    return (((2 * np.arange(start, count) + 0.5) - centre) / focal).astype(np.float32)


def _intersect(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Road coordinates where the rays (x, y, 1) meet strip planes. Per pixel, c[0:12] hold its strip's
    plane normal n and n.C (C a point of the strip), T / |T|^2 and the station at the optical origin's
    foot, N and the lateral offset there (T the tangent d/ds, N the unit normal across the road)."""

    def dot(k: int) -> np.ndarray:
        return c[k] * x + c[k + 1] * y + c[k + 2]

    with np.errstate(divide="ignore", invalid="ignore"):
        t = c[3] / dot(0)
    t = np.where((t > 0) & (t < 1.5 * _FAR), t, np.float32(1.5 * _FAR))  # rays above a strip's horizon
    return c[7] + t * dot(4), c[11] + t * dot(8), t


def _ground_view(world: _World, time: float, camera: PinholeCamera) -> _View:
    """Rasterise the ground strips far to near on the half-resolution grid (so a crest hides the road
    behind it) and intersect each grid pixel's ray with its strip's plane."""
    station, lateral, yaw = _ego_state(world, time)
    to_vehicle = _Transform(*_pose(world.road, station, lateral, yaw))
    half_w, half_h = (camera.width + 1) // 2, (camera.height + 1) // 2
    stations = station + _STRIPS
    centre, tangent, normal = world.road.frame(stations)
    curvature = np.gradient(np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0])), stations)
    reach = np.minimum(60.0, 4 * _STRIPS)
    with np.errstate(divide="ignore"):
        inner = 0.9 / np.abs(curvature)  # the inner side of a bend must not fold over itself
    left = np.where(curvature > 0, np.minimum(reach, inner), reach)
    right = np.where(curvature < 0, np.minimum(reach, inner), reach)
    optical_centre = camera.to_optical(to_vehicle(centre))
    optical_normal = to_vehicle.direction(normal) @ camera.R
    corners = np.concatenate([optical_centre - right[:, None] * optical_normal,
                              optical_centre + left[:, None] * optical_normal])  # fmt: skip
    depth = np.maximum(corners[:, 2], 0.05)
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    pixels = _fixed((np.column_stack([fx * corners[:, 0] / depth + cx, fy * corners[:, 1] / depth + cy]) - 0.5) / 2)
    n = len(stations)
    index = np.zeros((half_h, half_w), np.int16)
    for i in range(n - 2, -1, -1):
        cv2.fillPoly(index, [pixels[[i, i + 1, n + i + 1, n + i]]], i + 1, cv2.LINE_8, shift=4)
    ground_rows = np.flatnonzero(index.any(axis=1))
    top = int(ground_rows[0]) if len(ground_rows) else half_h - 1
    index = index[top:]

    C, T = optical_centre[:-1], (optical_centre[1:] - optical_centre[:-1]) / np.diff(stations)[:, None]
    N = optical_normal[:-1] + optical_normal[1:]
    N -= np.sum(N * T, axis=1, keepdims=True) / np.sum(T * T, axis=1, keepdims=True) * T
    N /= np.linalg.norm(N, axis=1, keepdims=True)
    plane = np.cross(T, N)
    Ts = T / np.sum(T * T, axis=1, keepdims=True)
    planes = np.column_stack([
        plane, np.sum(plane * C, axis=1), Ts, stations[:-1] - np.sum(C * Ts, axis=1), N, -np.sum(C * N, axis=1),
    ]).astype(np.float32)  # fmt: skip
    x = _half_axis(half_w, cx, fx)[None, :]
    y = _half_axis(half_h, cy, fy, top)[:, None]
    s, d, t = _intersect(planes.T[:, np.where(index > 0, index - 1, n - 2)], x, y)
    return _View(world, time, camera, station, to_vehicle, top, index, planes, s, d, t, x)


def _fixed(pixels: np.ndarray) -> np.ndarray:
    """Pixel coordinates as the fixed-point (4 fraction bits) integers of cv2's shift=4 drawing."""
    return np.round(np.clip(pixels, -1e6, 1e6) * 16).astype(np.int32)


def _frame(world: _World, time: float, camera: PinholeCamera, rng: np.random.Generator
           ) -> tuple[np.ndarray, tuple[Lane, ...]]:  # fmt: skip
    view = _ground_view(world, time, camera)
    objects = _objects(view)
    canvas = _background(view)
    base, light = _ground(view, _object_shadows(view, objects))
    ground = canvas[view.top :]
    np.copyto(ground, base, where=(view.index > 0)[..., None])
    image = cv2.resize(canvas, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)[: camera.height, : camera.width]
    _paint(view, image, light)
    glowing = world.look.night or world.look.glare
    emission = np.zeros(((camera.height + 3) // 4, (camera.width + 3) // 4, 3), np.float32) if glowing else None
    for item in sorted(objects, key=lambda o: -o.distance):
        pixels = _image_polygons(view, [polygon for polygon, _, _ in item.faces])
        for points, (_, colour, glow) in zip(pixels, item.faces):
            if points is not None:
                cv2.fillPoly(image, [_fixed(points)], colour, cv2.LINE_8, shift=4)
                if emission is not None and glow is not None:
                    cv2.fillPoly(emission, [_fixed((points + 0.5) / 4 - 0.5)], glow, cv2.LINE_8, shift=4)
    image = _effects(view, image, emission, rng)
    station, lateral, _ = _ego_state(world, time)
    return image, _lanes(world, station, lateral, view.to_vehicle, camera)


def _background(view: _View) -> np.ndarray:
    """Sky, clouds, sun, the skyline (trees, hills or buildings) and the far ground, as functions of the
    viewing direction, on the half-resolution grid down to the last row where the ground leaves a gap
    (below it the background is never seen)."""
    camera, world, look = view.camera, view.world, view.world.look
    half_w, half_h = (camera.width + 1) // 2, (camera.height + 1) // 2
    canvas = np.zeros((half_h, half_w, 3), np.float32)
    open_rows = np.flatnonzero((view.index == 0).any(axis=1))
    bottom = min(half_h, view.top + (int(open_rows[-1]) + 2 if len(open_rows) else 0))
    if bottom <= 0:
        return canvas
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    x = _half_axis(half_w, cx, fx)
    y = _half_axis(bottom, cy, fy)[:, None]
    M = view.optical_axes.astype(np.float32)
    rise = (M[2, 0] * x[None, :] + M[2, 1] * y + M[2, 2]) / np.sqrt(x[None, :] ** 2 + y**2 + 1)  # sin(elevation)
    level = -(M[2, 0] * x + M[2, 2]) / M[2, 1]  # image y of the horizon in each column
    azimuth = np.arctan2(M[1, 0] * x + M[1, 1] * level + M[1, 2], M[0, 0] * x + M[0, 1] * level + M[0, 2])
    horizon = np.array(look.sky_horizon, np.float32)
    pixel_angle = np.float32(2 / fx)
    # layers from the back: sky gradient (horizon to top), clouds, skyline, far ground
    height = np.sqrt(np.clip(rise / 0.43, 0, 1))
    if look.night:
        clouds = np.zeros_like(rise)
    else:
        columns = np.broadcast_to((azimuth % (2 * np.pi)) * np.float32(world.clouds.shape[1] / (2 * np.pi)), rise.shape)
        clouds = cv2.remap(world.clouds, np.ascontiguousarray(columns), np.clip(rise, 0, None) * 200,
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP) * np.clip(1 - 1.5 * rise, 0, 1)  # fmt: skip
    skyline = world.skyline[((np.degrees(azimuth) % 360) * 10).astype(np.int32) % 3600]
    solid = np.clip((skyline[None, :] - rise) / pixel_angle + 0.5, 0, 1)
    below = np.clip(-rise / pixel_angle + 0.5, 0, 1)
    shade = {"trees": (0.14, 0.24, 0.17), "hills": (0.42, 0.4, 0.36), "city": (0.5, 0.5, 0.52)}[look.skyline]
    darkness = 0.05 if look.night else 1.0
    far = np.array(shade, np.float32) * darkness
    ground = np.array(look.terrain, np.float32) * darkness
    front = 1 - below
    open_sky = front * (1 - solid) * (1 - clouds)
    weights = np.stack(
        [open_sky * (1 - height), open_sky * height, front * (1 - solid) * clouds, front * solid, below], axis=-1
    )
    haze_far, haze_skyline = 1 - np.exp(-np.array([_FAR, 2.5 * _FAR]) / look.visibility)  # as _ground hazes
    colours = np.array([horizon, look.sky_top, horizon * 1.05, far + haze_skyline * (horizon - far),
                        ground + haze_far * (horizon - ground)], np.float32)  # fmt: skip
    canvas[:bottom] = weights @ colours
    if not look.night:
        _draw_sun(view, canvas[:bottom], x, y)
    return canvas


def _draw_sun(view: _View, sky: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """Add the sun's disk and aureole to the half-resolution sky where it is in view."""
    camera = view.camera
    sun = _sun_direction(view.world.look) @ view.optical_axes
    if sun[2] <= 0.05:
        return
    u, v = sun[0] / sun[2], sun[1] / sun[2]
    radius = 0.15 * camera.width / camera.K[0, 0]
    columns = np.flatnonzero(np.abs(x - u) < radius)
    rows = np.flatnonzero(np.abs(y[:, 0] - v) < radius)
    if not len(columns) or not len(rows):
        return
    xs, ys = x[columns][None, :], y[rows]
    facing = (sun[0] * xs + sun[1] * ys + sun[2]) / np.sqrt(xs**2 + ys**2 + 1)
    glow = 1.5 * np.exp((facing - 1) / 2e-5) + 0.3 * np.exp((facing - 1) / 2e-3)
    sky[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1] += glow[..., None]


def _sun_direction(look: _Look) -> np.ndarray:
    c = np.cos(look.sun_elevation)
    return np.array([c * np.cos(look.sun_azimuth), c * np.sin(look.sun_azimuth), np.sin(look.sun_elevation)])


_WHITE_PAINT = (0.86, 0.87, 0.87)
_YELLOW_PAINT = (0.12, 0.62, 0.82)
_CURB, _SIDEWALK = (0.62, 0.62, 0.6), (0.5, 0.5, 0.49)


def _ground(view: _View, object_shadow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour of the ground on the half-resolution grid without paint: asphalt, shoulders, curbs,
    sidewalks and terrain by road coordinates, textured, lit and hazed. Also returns the light and haze
    (2 planes) that paint at the same place receives."""
    world, look, road, camera = view.world, view.world.look, view.world.road, view.camera
    s, d = view.s, view.d
    tex_x, tex_y = _texel(d, _TEX_COLS, _TEX_COLS / 2), _texel(s, _TEX_ROWS)
    tex = cv2.remap(world.texture, tex_x, tex_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    grain_x, grain_y = _texel(6 * d, _TEX_COLS), _texel(6 * s, _TEX_ROWS)
    grain = cv2.remap(world.grain, grain_x, grain_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    variation = tex[..., 0] + 0.6 * grain
    haze = 1 - np.exp(-view.depth / np.float32(look.visibility))
    lit = _ground_light(view, np.maximum(tex[..., 1], object_shadow)) * (1 - haze)
    across = 2 * view.depth / np.float32(camera.K[0, 0])  # metres per grid pixel across the line of sight
    lo, hi = road.edges
    paved = _band(d, lo, hi, across)
    if world.crossing:
        along = across * np.maximum(view.depth / np.float32(camera.mount_height), 1)
        paved = np.maximum(paved, _band(s, *world.crossing, along))
    layers = [(paved * (1 + 0.15 * variation) * lit, look.asphalt)]
    rest = 1 - paved
    for side, edge in ((0, lo), (1, hi)):
        if road.curbs[side]:
            outward = edge - d if side == 0 else d - edge
            kerb = _band(outward, 0, 0.2, across) * rest
            rest -= kerb
            walk = _band(outward, 0.2, 3.5, across) * rest
            rest -= walk
            layers += [(kerb * lit, _CURB), (walk * (1 + 0.08 * variation) * lit, _SIDEWALK)]
    layers.append((rest * (1 + 0.3 * variation) * lit, look.terrain))
    layers.append((haze, tuple(c * (0.3 if look.night else 1.0) for c in look.sky_horizon)))
    weights = np.stack([w for w, _ in layers], axis=-1)
    colour = weights @ np.array([c for _, c in layers], np.float32)
    return colour, np.stack([lit, haze], axis=-1)


def _texel(metres: np.ndarray, size: int, shift: float = 0.0) -> np.ndarray:
    """Texture coordinate of a road coordinate, wrapped into the texture (cv2.remap is much slower on
    coordinates far outside it)."""
    return _wrap(metres / np.float32(_TEXEL) + np.float32(shift), size)


def _wrap(x: np.ndarray, period: float | np.ndarray) -> np.ndarray:
    """x modulo period, in [0, period); several times faster than np.mod on float32."""
    period = np.asarray(period, np.float32)
    turns = x / period
    np.floor(turns, out=turns)
    return x - turns * period


def _nearest(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted `points` for every value."""
    middles = (points[1:] + points[:-1]) / 2
    out = np.zeros(values.shape, np.intp)
    for middle in middles:
        out += values > middle
    return out


def _paint(view: _View, image: np.ndarray, light: np.ndarray) -> None:
    """Lay paint on the full-resolution image: lane lines (solid, dashed, double; worn), arrows and, at a
    crossroad, zebra crossings and a stop line. The grid picks the pixels that may carry paint; there
    the road coordinates are computed exactly and the paint is anti-aliased by the pixel footprint."""
    world, road, camera = view.world, view.world.road, view.camera
    table = np.array(
        [[b.offset, b.width / 2 + b.separation / 2, b.separation / 2, b.dash, b.period, b.phase,
          b.kind == "dashed", b.wear, b.colour == "yellow"] for b in road.boundaries], np.float32,
    )  # fmt: skip
    grid_across = 2 * view.depth / np.float32(camera.K[0, 0])
    nearest = _nearest(view.d, road.offsets)
    candidate = np.abs(view.d - table[nearest, 0]) < table[nearest, 1] + 1.5 * grid_across
    lo, hi = road.edges
    if world.arrows:
        arrow_lanes = (view.d > lo) & (view.d < road.boundaries[road.forward_lanes].offset)
        candidate |= (_wrap(view.s - np.float32(world.arrow_station - 1), 60.0) < _ARROW_LENGTH + 2) & arrow_lanes
    if world.crossing:
        start, end = world.crossing
        zebras = ((view.s > start - 7) & (view.s < start)) | ((view.s > end) & (view.s < end + 5))
        candidate |= zebras & (view.d > lo) & (view.d < hi)
    j, i = np.nonzero(candidate)
    rows = (2 * (j + view.top) + np.array([[0], [0], [1], [1]])).ravel()
    cols = (2 * i + np.array([[0], [1], [0], [1]])).ravel()
    keep = (rows < camera.height) & (cols < camera.width)
    rows, cols = rows[keep], cols[keep]
    s, d, depth = view.exact(rows, cols)
    across = depth / np.float32(camera.K[0, 0])
    along = across * np.maximum(depth / np.float32(camera.mount_height), 1)
    survival = _sample(world.texture[..., 2].copy(), _texel(d, _TEX_COLS, _TEX_COLS / 2), _texel(s, _TEX_ROWS),
                       cv2.BORDER_WRAP)  # fmt: skip
    p = table[_nearest(d, road.offsets)]
    distance = np.abs(np.abs(d - p[:, 0]) - p[:, 2])
    cover = np.clip((p[:, 1] - p[:, 2] - distance) / across + 0.5, 0, 1)
    u = _wrap(s - p[:, 5], p[:, 4])
    inside = np.maximum(np.minimum(u, p[:, 3] - u), u - p[:, 4])  # signed distance into the dash
    dash = np.clip(inside / along + 0.5, 0, 1)
    dash += (p[:, 3] / p[:, 4] - dash) * np.clip(2 * along / p[:, 4], 0, 1)  # too far to resolve: mean cover
    cover *= np.where(p[:, 6] > 0, dash, 1)
    cover *= np.clip((survival - p[:, 7]) / 0.12, 0, 1) * (1 - 0.4 * p[:, 7])
    if world.crossing:
        cover *= 1 - _band(s, world.crossing[0] - 6, world.crossing[1] + 5, along)
    yellow = cover * p[:, 8]
    white = cover - yellow
    if world.arrows:
        white = np.maximum(white, _arrows(view, s, d) * np.clip(survival + 0.4, 0, 1))
    if world.crossing:
        zebra = _band(s, start - 4.5, start - 0.5, along) + _band(s, end + 0.5, end + 4.5, along)
        stripe = np.abs(_wrap(d + np.float32(0.25), 1.0) - 0.5)
        zebra *= np.clip((0.22 - stripe) / across + 0.5, 0, 1) * _band(d, lo + 0.3, hi - 0.3, across)
        stop_d = road.boundaries[road.forward_lanes].offset
        stop = _band(s, start - 6.0, start - 5.5, along) * _band(d, lo + 0.3, stop_d, across)
        white = np.maximum(white, np.clip(zebra + stop, 0, 1) * np.clip(survival + 0.5, 0, 1))
    painted = np.flatnonzero(white + yellow > 0)
    rows, cols, white, yellow = rows[painted], cols[painted], white[painted, None], yellow[painted, None]
    lit, haze = light[rows // 2 - view.top, cols // 2].T
    paint = white * np.array(_WHITE_PAINT, np.float32) + yellow * np.array(_YELLOW_PAINT, np.float32)
    hazed = np.array(view.world.look.sky_horizon, np.float32) * (0.3 if world.look.night else 1.0)
    image[rows, cols] += paint * lit[:, None] + (white + yellow) * (haze[:, None] * hazed - image[rows, cols])


def _arrows(view: _View, s: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Coverage of the arrow stencils in the lanes that carry them, every 60 m from `arrow_station` on."""
    world, road = view.world, view.world.road
    stencils = _arrow_stencils()
    shapes, rows, cols = stencils.shape
    lanes = len(road.boundaries) - 1
    centres = np.array([road.lane_centre(k) for k in range(lanes)], np.float32)
    block = np.full(lanes, -1e4, np.float32)  # lanes without an arrow map off the atlas
    for lane, shape in world.arrows:
        block[lane] = shape * (cols + 2) + 1 + cols / 2
    atlas = np.zeros((rows, (cols + 2) * shapes), np.float32)
    for shape in range(shapes):
        atlas[:, shape * (cols + 2) + 1 : shape * (cols + 2) + 1 + cols] = stencils[shape]
    lane = _nearest(d, centres)
    u = (d - centres[lane]) / _ARROW_TEXEL + block[lane]
    v = _wrap(s - np.float32(world.arrow_station), 60.0) / np.float32(_ARROW_TEXEL)
    return _sample(atlas, u, v, cv2.BORDER_CONSTANT)


def _sample(texture: np.ndarray, x: np.ndarray, y: np.ndarray, border: int) -> np.ndarray:
    """Bilinear samples of a one-channel texture at scattered points (cv2.remap wants a 2-D map with
    sides under 32767, so the points are laid out in rows of 1024)."""
    count = len(x)
    rows = -(-count // 1024)
    maps = np.zeros((2, rows * 1024), np.float32)
    maps[0, :count], maps[1, :count] = x, y
    out = cv2.remap(texture, maps[0].reshape(rows, 1024), maps[1].reshape(rows, 1024), cv2.INTER_LINEAR,
                    borderMode=border, borderValue=0)  # fmt: skip
    return out.ravel()[:count]


_LAMP_PHASE = 0.37  # lamps stand at stations (k + _LAMP_PHASE) * lamp_period


def _lamp_stations(view: _View) -> np.ndarray:
    period = view.world.look.lamp_period
    first = np.ceil((view.station - 5) / period)
    return (first + np.arange(int(200 / period) + 1) + _LAMP_PHASE) * period


def _ground_light(view: _View, shadow: np.ndarray) -> np.ndarray:
    """Illumination of the ground: sun and sky by day (less in shadow); at night the ego headlights,
    street lamps and a little ambient light."""
    look = view.world.look
    if not look.night:
        return look.ambient + (1 - look.ambient) * (1 - look.shadow_depth * shadow)
    beam = np.exp(-((view.x / 0.5) ** 2)) * np.minimum((13 / view.depth) ** 1.7, 1.2)
    light = look.ambient + 0.9 * beam
    if look.lamps:  # pools of light under the lamps; only the nearest lamp counts
        period = np.float32(look.lamp_period)
        along = _wrap(view.s - (_LAMP_PHASE - 0.5) * period, period) - period / 2
        light += 0.8 * np.exp(-(along**2 + (view.d - np.float32(view.world.road.edges[0] - 1.2)) ** 2) / 90)
    return light.astype(np.float32)


# ----------------------------------------------------------------------------------- objects

@dataclass(eq=False)
class _Object:
    distance: float
    faces: list[tuple[np.ndarray, Colour, Colour | None]]  # world polygon, colour, glow (emission) or None
    casters: np.ndarray  # (k, 3) world points whose shadows outline the object's shadow
    ground: float  # height of the road under it
    contact: bool  # leaves a dark patch under it at night (vehicles)


_CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)  # index 4x + 2y + z
_FACES = np.array([[4, 6, 7, 5], [2, 0, 1, 3], [2, 6, 7, 3], [4, 0, 1, 5], [1, 5, 7, 3], [0, 2, 6, 4]])
_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)


def _box_faces(origin: np.ndarray, axes: np.ndarray, box: tuple[float, ...], viewer: np.ndarray
               ) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """The faces of an axis-aligned box in a body frame that `viewer` (a world point) sees: world
    corners (4, 3) and outward normal of each."""
    lo, hi = np.array(box[0::2]), np.array(box[1::2])
    corners = origin + (lo + _CORNERS * (hi - lo)) @ axes.T
    faces, normals = corners[_FACES], _NORMALS @ axes.T
    seen = np.einsum("fk,fk->f", normals, viewer - faces[:, 0]) > 0
    return list(zip(faces[seen], normals[seen]))


def _vehicle_parts(v: _Vehicle) -> list[tuple[tuple[float, ...], str]]:
    """Boxes (x0, x1, y0, y1, z0, z1) in the vehicle frame (x forward, origin on the road under its
    centre) with their material, in drawing order."""
    length, width, height = v.size
    hl, hw = length / 2, width / 2
    axles = (hl - 1.0, -hl + 1.0, -hl + 2.4) if v.truck else (hl - 0.85, -hl + 0.85)
    parts = [((a - 0.38, a + 0.38, side * hw - 0.14, side * hw + 0.14, 0.0, 0.76), "wheel")
             for a in axles for side in (-1, 1)]  # fmt: skip
    if v.truck:
        top = 1.05
        parts += [((hl - 2.3, hl, -hw, hw, 0.45, 3.0), "body"), ((-hl, hl - 2.45, -hw, hw, 0.95, height), "cargo")]
    else:
        top = 0.25 + 0.5 * height
        parts += [((-hl, hl, -hw, hw, 0.28, top), "body"),
                  ((-hl + 0.22 * length, hl - 0.3 * length, -hw + 0.08, hw - 0.08, top, height), "cabin")]  # fmt: skip
    lamp = (top - 0.24, top - 0.06) if not v.truck else (0.95, 1.2)
    for side in (-1, 1):
        y0, y1 = sorted((side * (hw - 0.08), side * (hw - 0.38)))
        parts += [((-hl - 0.03, -hl, y0, y1, *lamp), "tail"), ((hl, hl + 0.03, y0, y1, *lamp), "head")]
    parts.append(((-hl - 0.02, -hl, -0.26, 0.26, lamp[0] - 0.2, lamp[0] - 0.08), "plate"))
    return parts


def _shade(view: _View, normal: np.ndarray, distance: float) -> float:
    look = view.world.look
    if look.night:
        return look.ambient + 0.8 * min((12 / max(distance, 1)) ** 1.7, 1.0)
    sun = max(float(normal @ _sun_direction(look)), 0.0)
    return look.ambient + (1 - look.ambient) * (0.25 + 0.75 * sun) + 0.1 * float(normal[2])


def _objects(view: _View) -> list[_Object]:
    """Vehicles at their positions at the view's time, street lamps along the right roadside and the
    roadside trees near the camera."""
    world, road, look = view.world, view.world.road, view.world.look
    camera_world = view.to_vehicle.origin + view.to_vehicle.axes @ view.camera.position
    out = []
    placed: list[tuple[_Vehicle, float, float, float]] = []
    for v in world.vehicles:
        if v.crossing:
            sign = 1 if v.lane == 0 else -1
            placed.append((v, v.station, v.lateral + sign * v.speed * view.time, sign * np.pi / 2))
        else:
            oncoming = v.lane >= road.forward_lanes
            station = v.station + (-1 if oncoming else 1) * v.speed * view.time
            placed.append((v, station, road.lane_centre(v.lane) + v.lateral, np.pi if oncoming else 0.0))
    glass = _colour(0.08 + 0.3 * np.array(look.sky_horizon) * (0.2 if look.night else 1))
    for v, station, lateral, yaw in placed:
        if not view.station - 12 < station < view.station + 260:
            continue
        origin, axes = _pose(road, station, lateral, yaw)
        distance = float(np.linalg.norm(origin - camera_world))
        faces: list[tuple[np.ndarray, Colour, Colour | None]] = []
        for box, material in _vehicle_parts(v):
            if material == "head" and not (look.night and yaw != 0):
                continue
            for corners, normal in _box_faces(origin, axes, box, camera_world):
                glow: Colour | None = None
                if material == "tail":
                    colour: Colour = (0.3, 0.3, 1.0) if look.night else (0.1, 0.1, 0.55)
                    glow = (0.3, 0.35, 2.2) if look.night else None
                elif material == "head":
                    colour, glow = (1.0, 1.0, 1.0), (4.0, 4.2, 4.4)
                else:
                    base = {"wheel": (0.04, 0.04, 0.04), "plate": (0.75, 0.78, 0.8), "cargo": (0.8, 0.8, 0.78)}
                    albedo = glass if material == "cabin" and normal[2] < 0.5 else base.get(material, v.colour)
                    shade = _shade(view, normal, distance)
                    colour = _colour(np.array(albedo) * shade)
                faces.append((corners, colour, glow))
        length, width, height = v.size
        corners = (_CORNERS - [0.5, 0.5, 0]) * [length, width, height]
        out.append(_Object(distance, faces, origin + corners @ axes.T, float(origin[2]), True))
    if look.lamps:
        side = road.edges[0] - 1.2
        for station in _lamp_stations(view):
            origin, axes = _pose(road, float(station), side, 0.0)
            distance = float(np.linalg.norm(origin - camera_world))
            faces = []
            for box, glow in (((-0.08, 0.08, -0.08, 0.08, 0, 8), None), ((-0.05, 0.05, 0, 1.9, 7.8, 7.92), None),
                              ((-0.3, 0.3, 1.4, 2.1, 7.7, 7.84), (1.6, 2.2, 2.6) if look.night else None)):  # fmt: skip
                for corners, normal in _box_faces(origin, axes, box, camera_world):
                    grey = 0.45 * _shade(view, normal, distance)
                    faces.append((corners, glow or (grey, grey, grey * 1.05), glow))
            pole = (_CORNERS - [0.5, 0.5, 0]) * [0.16, 0.16, 8.0]
            out.append(_Object(distance, faces, origin + pole @ axes.T, float(origin[2]), False))
    near = (world.trees[:, 0] > view.station - 10) & (world.trees[:, 0] < view.station + 220)
    out += [_tree(view, tree, camera_world) for tree in world.trees[near]]
    return out


def _tree(view: _View, tree: np.ndarray, camera_world: np.ndarray) -> _Object:
    """A trunk and a crown drawn as two camera-facing discs, the upper one lit."""
    station, lateral, height, radius, brightness = tree
    origin, axes = _pose(view.world.road, float(station), float(lateral), 0.0)
    distance = float(np.linalg.norm(origin - camera_world))
    faces: list[tuple[np.ndarray, Colour, Colour | None]] = []
    trunk = (-0.15, 0.15, -0.15, 0.15, 0.0, height - 0.5 * radius)
    for corners, normal in _box_faces(origin, axes, trunk, camera_world):
        grey = 0.22 * _shade(view, normal, distance)
        faces.append((corners, (grey * 0.8, grey * 0.95, grey * 1.1), None))
    crown = origin + np.array([0.0, 0.0, height])
    right, up = view.optical_axes[:, 0], -view.optical_axes[:, 1]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)[:, None]
    ragged = 1 + 0.1 * np.sin(3 * angles + station) + 0.07 * np.sin(7 * angles + 2 * station)
    ring = ragged * (np.cos(angles) * right + 1.1 * np.sin(angles) * up)
    light = _shade(view, up, distance) * brightness
    foliage = np.array([0.1, 0.26, 0.15])
    faces.append((crown + radius * ring, _colour(foliage * 0.6 * light), None))
    faces.append((crown + radius * (0.62 * ring + 0.3 * up), _colour(foliage * light), None))
    rim = crown + radius * (np.cos(angles) * axes[:, 0] + np.sin(angles) * axes[:, 1])  # the crown's horizontal rim
    casters = np.vstack([origin + [0.0, 0.0, 0.1], rim])
    return _Object(distance, faces, casters, float(origin[2]), False)


def _object_shadows(view: _View, objects: list[_Object]) -> np.ndarray:
    """Shadows the objects cast on the road, on the half-resolution grid: the sun's shadow by day, a dark
    contact patch at night."""
    look = view.world.look
    mask = np.zeros(view.s.shape, np.float32)
    sun = _sun_direction(look)
    for item in objects:
        if look.night and not item.contact:
            continue
        drop = np.array([0.0, 0.0, 1.0]) if look.night else sun / max(sun[2], 0.05)
        outline = item.casters - (item.casters[:, 2:] - item.ground) * drop
        hull = cv2.convexHull(view.to_vehicle(outline)[:, :2].astype(np.float32), returnPoints=False)[:, 0]
        pixels = _image_points(view, outline[hull])
        if pixels is not None:
            cv2.fillPoly(mask, [_fixed((pixels - 0.5) / 2 - [0, view.top])], 0.6 if look.night else 1.0,
                         cv2.LINE_8, shift=4)  # fmt: skip
    return cv2.GaussianBlur(mask, (0, 0), 1.0)


def _image_points(view: _View, polygon: np.ndarray) -> np.ndarray | None:
    """Pixels of a convex world polygon, clipped to 0.3 m in front of the camera (None if nothing is)."""
    optical = clip_near(view.optical(polygon), 0.3)
    if len(optical) < 3:
        return None
    K = view.camera.K
    return optical[:, :2] / optical[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]


def _image_polygons(view: _View, polygons: list[np.ndarray]) -> list[np.ndarray | None]:
    """Pixels of many convex world polygons, projected together; those reaching behind the near plane
    are clipped one by one."""
    if not polygons:
        return []
    optical = view.optical(np.concatenate(polygons))
    K = view.camera.K
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = optical[:, :2] / optical[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    out: list[np.ndarray | None] = []
    start = 0
    for polygon in polygons:
        stop = start + len(polygon)
        if (optical[start:stop, 2] >= 0.3).all():
            out.append(pixels[start:stop])
        else:
            out.append(_image_points(view, polygon))
        start = stop
    return out


# ----------------------------------------------------------------------------------- camera effects


def _effects(view: _View, image: np.ndarray, emission: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Rain, the conversion to 8 bits, glare and bloom (light added from a quarter-resolution layer),
    motion blur, optics blur, sensor noise and JPEG artefacts."""
    look, camera = view.world.look, view.camera
    width, height = camera.width, camera.height
    if look.rain:  # a veil of spray: less contrast
        haze = np.array(look.sky_horizon, np.float32) * (0.3 if look.night else 0.9)
        image = image * (1 - 0.25 * look.rain) + 0.25 * look.rain * haze
    out = cv2.convertScaleAbs(image, alpha=255)  # all values are >= 0
    light = np.zeros(((height + 3) // 4, (width + 3) // 4, 3), np.float32)
    if look.glare and not look.night:
        light += _sun_glare(view, light.shape[:2])
    if emission is not None:
        light += 1.6 * emission + 0.9 * cv2.GaussianBlur(emission, (0, 0), 2)
        light += 0.7 * cv2.GaussianBlur(emission, (0, 0), 8)
        light += 0.3 * cv2.GaussianBlur(emission, (0, 0), sigmaX=20, sigmaY=0.6)  # horizontal streaks
    if emission is not None or look.glare:
        layer = cv2.convertScaleAbs(light, alpha=255)
        out = cv2.add(out, cv2.resize(layer, (width, height), interpolation=cv2.INTER_LINEAR))
    if look.rain:
        streaks = _rain(rng, look.rain, width, height)
        out = cv2.add(out, cv2.merge([streaks, streaks, streaks]))
    if look.motion_blur:  # a shaking (vertical) or turning (horizontal) camera
        size = look.motion_blur
        out = cv2.blur(out, (size, 1) if look.blur_horizontal else (1, size))
    out = cv2.GaussianBlur(out, (3, 3), 0.6)
    mask = 15 if look.night else 7  # sensor noise, uniform in +-mask / 2 levels
    noise = np.frombuffer(rng.bytes(width * height), np.uint8).reshape(height, width) & mask
    out = cv2.addWeighted(out, 1.0, cv2.merge([noise, noise, noise]), 1.0, -mask / 2)
    if look.jpeg_quality:
        encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])[1]
        out = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return out


def _rain(rng: np.random.Generator, amount: float, width: int, height: int) -> np.ndarray:
    """Falling-rain streaks: short, slightly slanted, soft, of random brightness; (H, W) uint8."""
    streaks = np.zeros((height, width), np.uint8)
    count = int(amount * 2.5e-4 * width * height)
    start = rng.uniform([0, 0], [width, height], (count, 2))
    angle = np.radians(rng.normal(100, 6, count))
    length = rng.uniform(0.01, 0.04, count) * height
    end = start + length[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    for a, b, level in zip(_fixed(start), _fixed(end), rng.integers(40, 110, count)):
        cv2.line(streaks, a, b, int(level), 1, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(streaks, (0, 0), 0.8)


def _sun_glare(view: _View, shape: tuple[int, ...]) -> np.ndarray:
    """A low sun ahead: halo, veiling glare, a bright sheen on the road below the sun and lens ghosts;
    light to add, on a grid of `shape` (rows, cols) covering the image."""
    camera = view.camera
    width, height = camera.width, camera.height
    small = (shape[1], shape[0])
    sun = _sun_direction(view.world.look) @ view.optical_axes
    depth = max(sun[2], 0.05)
    u, v = camera.K[0, 0] * sun[0] / depth + camera.K[0, 2], camera.K[1, 1] * sun[1] / depth + camera.K[1, 2]
    scale = width / small[0]
    x = (np.arange(small[0], dtype=np.float32) + 0.5) * scale - u
    y = (np.arange(small[1], dtype=np.float32) + 0.5) * scale - v
    r = np.sqrt(x[None, :] ** 2 + y[:, None] ** 2)
    glow = 1.6 * np.exp(-((r / (0.035 * width)) ** 2)) + 0.55 * np.exp(-r / (0.12 * width)) + 0.12
    glow += 0.45 * np.exp(-((x[None, :] / (0.05 * width)) ** 2)) * np.clip(y[:, None] / (0.4 * height), 0, 1)
    for k in (0.6, 1.3, 1.8):  # ghosts on the line through the image centre
        gx, gy = u + k * (width / 2 - u), v + k * (height / 2 - v)
        gr = np.sqrt(((x + u - gx)[None, :]) ** 2 + ((y + v - gy)[:, None]) ** 2)
        glow += 0.08 * (gr < 0.02 * width * (1 + k))
    return glow[..., None].astype(np.float32) * np.array([0.75, 0.9, 1.0], np.float32)


# ----------------------------------------------------------------------------------- public API


def road_sample(
    seed: int,
    index: int = 0,
    width: int = 1640,
    height: int = 590,
    category: str | None = None,
    horizon: tuple[float, float] = CULANE_HORIZON,
) -> RoadSample:
    """Scene `index` of the stream `seed` (a random category unless one is given), seen by a random
    camera of the given size. The scene and the camera mount depend only on (seed, index), so the same
    pair at another size (a TuSimple-sized 1280x720 variant, say) shows the same road."""
    world_seed, camera_seed, noise_seed = np.random.SeedSequence([seed, index]).spawn(3)
    world = _make_world(world_seed, category, 0.0)
    camera = sample_camera(np.random.default_rng(camera_seed), width, height, horizon)
    image, lanes = _frame(world, 0.0, camera, np.random.default_rng(noise_seed))
    return RoadSample(image, lanes, camera, world.category)


def drive_camera(seed: int, width: int = 1640, height: int = 590,
                 horizon: tuple[float, float] = CULANE_HORIZON) -> PinholeCamera:
    """The camera (intrinsics and mounting) of drive `seed`, without rendering anything: what a lanes
    node needs as its static extrinsic to project the drive's lanes onto the road."""
    camera_seed = np.random.SeedSequence([seed]).spawn(3)[1]
    return sample_camera(np.random.default_rng(camera_seed), width, height, horizon)


def drive(
    seed: int,
    n_frames: int,
    fps: float = 10.0,
    width: int = 1640,
    height: int = 590,
    category: str | None = None,
    horizon: tuple[float, float] = CULANE_HORIZON,
) -> Iterator[RoadSample]:
    """`n_frames` consecutive frames of one drive, rendered as they are iterated: the same road, camera
    and traffic throughout, the ego vehicle moving forward and changing lanes smoothly; every lane keeps
    its id (boundary index)."""
    if n_frames < 1 or not fps > 0:
        raise ValueError(f"drive needs n_frames >= 1 and fps > 0, got {n_frames} and {fps}")
    world_seed, _, noise_seed = np.random.SeedSequence([seed]).spawn(3)
    world = _make_world(world_seed, category, n_frames / fps)
    camera = drive_camera(seed, width, height, horizon)
    times = np.arange(n_frames) / fps
    rngs = (np.random.default_rng(frame_seed) for frame_seed in noise_seed.spawn(n_frames))
    return (
        RoadSample(*_frame(world, float(time), camera, rng), camera, world.category, float(time))
        for time, rng in zip(times, rngs)
    )


_KIND_COLOURS = {"solid": (0, 255, 0), "dashed": (255, 255, 0), "double": (0, 160, 255), "road_edge": (255, 0, 255)}


def draw_lanes(sample: RoadSample) -> np.ndarray:
    """The image with its ground-truth lanes drawn, coloured by kind, and the category written on it."""
    image = sample.image.copy()
    thickness = max(2, sample.camera.width // 400)
    for lane in sample.lanes:
        points = np.round(lane.image_points * 16).astype(np.int32)
        cv2.polylines(image, [points], False, _KIND_COLOURS[lane.kind], thickness, cv2.LINE_AA, shift=4)
        for x, y in np.round(lane.image_points).astype(int):
            cv2.circle(image, (int(x), int(y)), thickness + 1, _KIND_COLOURS[lane.kind], -1, cv2.LINE_AA)
    scale = sample.camera.width / 600
    cv2.putText(image, sample.category, (int(10 * scale), int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)  # fmt: skip
    return image


_PREVIEW_ORDER = ("normal", "crowd", "hlight", "shadow", "noline", "arrow", "curve", "night", "cross")


def preview(seed: int, n: int = 8, width: int = 1640, height: int = 590) -> np.ndarray:
    """A grid of `n` scenes of the stream `seed`, one category after the other, with their ground truth
    (solid green, dashed cyan, double orange, road edge magenta)."""
    scenes = [road_sample(seed, i, width, height, _PREVIEW_ORDER[i % len(_PREVIEW_ORDER)]) for i in range(n)]
    return grid([draw_lanes(scene) for scene in scenes], cols=2, tile_width=480)
