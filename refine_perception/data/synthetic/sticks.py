"""Pick-and-place sticks: the top-down scene of Fig. 1 of De Brabandere et al. 2017 (discriminative loss),
rods of varied length, width, colour and texture lying across each other on a cluttered table.

Geometry. Table frame in metres: x along the image columns, y along the image rows, z up from the table.
The camera looks straight down from `camera_height`, so depth (distance along the optical axis) is
`camera_height - z`. A stick is a horizontal rod with rounded ends (a capsule seen from above) resting
on the table or on the highest stick under it; its top is a flat plane at `bottom + width`, which is
what the depth image and the silhouettes show (the rounded surface differs by at most the radius at the
rim). Sticks are numbered bottom of the stack first, so stick k can only hide sticks j < k: a pixel
shows the highest stick over it. Clutter on the table is flat (paper, tape, pen strokes, stains), so
every pixel that is not a stick has the table's depth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from refine_perception.core.calibration import Calibration
from refine_perception.data.formats import coco
from refine_perception.data.preview import grid
from refine_perception.data.synthetic.parallel import write_dataset
from refine_perception.data.synthetic.shading import apply_light, finish_image, smooth_noise

MIN_STICKS, MAX_STICKS = 2, 15
STICK_CATEGORY = {"id": 1, "name": "stick", "supercategory": "object"}


@dataclass(frozen=True)
class Stick:
    """A rod in table coordinates (metres). `ends()` are the centres of its rounded ends, so the
    tip-to-tip length is their distance plus the width."""

    centre: tuple[float, float]
    direction: tuple[float, float]  # unit vector along the axis
    length: float  # tip to tip
    width: float  # diameter
    bottom: float  # height of the underside above the table

    @property
    def top(self) -> float:
        return self.bottom + self.width

    @property
    def radius(self) -> float:
        return self.width / 2

    def ends(self) -> tuple[np.ndarray, np.ndarray]:
        half = (self.length - self.width) / 2 * np.asarray(self.direction)
        centre = np.asarray(self.centre)
        return centre - half, centre + half


DEPTH_UNIT_M = 0.001  # metres per count of the 16UC1 depth images (bags, the camera source)


@dataclass(frozen=True)
class SticksScene:
    """An image with its exact ground truth; `camera` holds the intrinsics (square pixels)."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    depth: np.ndarray  # (H, W) float32, metres along the optical axis
    instance_map: np.ndarray  # (H, W) int32: -1 table, k where stick k is visible
    full_masks: np.ndarray  # (N, H, W) bool: each stick's whole silhouette, as if alone
    sticks: tuple[Stick, ...]  # bottom of the stack first
    covers: np.ndarray  # (N, N) bool: covers[k, j] when k lies above j and their footprints overlap
    camera: Calibration
    camera_height: float

    @property
    def free(self) -> np.ndarray:
        """Sticks with nothing on top of them: the ones a gripper can take first."""
        return ~self.covers.any(axis=0)

    def visible_masks(self) -> np.ndarray:
        return self.instance_map[None] == np.arange(len(self.sticks))[:, None, None]

    def depth_millimetres(self) -> np.ndarray:
        """The depth as a depth camera sends it: uint16 counts of DEPTH_UNIT_M (16UC1)."""
        return np.round(self.depth / DEPTH_UNIT_M).astype(np.uint16)

    def image_axis(self, k: int) -> dict[str, object]:
        """Stick k's axis in pixels, measured on its top plane (where its silhouette is)."""
        stick = self.sticks[k]
        K = self.camera.K
        scale = K[0, 0] / (self.camera_height - stick.top)
        centre = _project(np.asarray(stick.centre), K, self.camera_height - stick.top)
        return {
            "centre": [float(centre[0]), float(centre[1])],
            "angle": float(np.arctan2(stick.direction[1], stick.direction[0])),
            "length": float(stick.length * scale),
            "width": float(stick.width * scale),
        }


def _segment_distance(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> float:
    """Shortest distance between two 2-D segments (0 when they cross)."""

    def side(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
        return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    if side(a0, a1, b0) * side(a0, a1, b1) < 0 and side(b0, b1, a0) * side(b0, b1, a1) < 0:
        return 0.0

    def to_segment(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> float:
        d = s1 - s0
        t = np.clip(np.dot(p - s0, d) / max(np.dot(d, d), 1e-12), 0.0, 1.0)
        return float(np.linalg.norm(p - s0 - t * d))

    return min(to_segment(a0, b0, b1), to_segment(a1, b0, b1), to_segment(b0, a0, a1), to_segment(b1, a0, a1))


def _overlap(a: Stick, b: Stick) -> bool:
    return _segment_distance(*a.ends(), *b.ends()) < a.radius + b.radius


def _capsule(
    x: np.ndarray, y: np.ndarray, start: np.ndarray, direction: np.ndarray, segment: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For table points (x, y): the coordinate along an axis from its start, and the offset (dx, dy)
    from the nearest axis point. Axis parameters are per point or shared; (dx, dy) is shorter than the
    radius exactly inside the rod's silhouette."""
    rx, ry = x - start[..., 0], y - start[..., 1]
    along = rx * direction[..., 0] + ry * direction[..., 1]
    t = np.clip(along, 0.0, segment)
    return along, rx - t * direction[..., 0], ry - t * direction[..., 1]


def _stick_capsule(x: np.ndarray, y: np.ndarray, stick: Stick) -> tuple[np.ndarray, np.ndarray]:
    start, end = stick.ends()
    _, ox, oy = _capsule(x, y, start, np.asarray(stick.direction), float(np.linalg.norm(end - start)))
    return ox, oy


def _place_sticks(rng: np.random.Generator, K: np.ndarray, camera_height: float, size: tuple[int, int]) -> list[Stick]:
    """Drop sticks one by one around one or two pile centres; each lands on the table or on the highest
    stick it crosses. A stick is kept only if its whole silhouette is inside the image (`size` = (W, H))."""
    target = int(rng.integers(MIN_STICKS, MAX_STICKS + 1))
    lo = (np.zeros(2) - K[:2, 2]) / K[0, 0] * camera_height  # the table seen by the camera
    span = (np.asarray(size) - K[:2, 2]) / K[0, 0] * camera_height - lo
    piles = lo + span * rng.uniform(0.3, 0.7, size=(int(rng.integers(1, 3)), 2))
    spread = rng.uniform(0.03, 0.1)
    sticks: list[Stick] = []
    for _ in range(60 * target):
        if len(sticks) == target:
            break
        length = rng.uniform(0.08, min(0.3, 0.7 * span.min()))
        width = rng.uniform(0.007, 0.022)
        angle = rng.uniform(0, np.pi)
        centre = piles[rng.integers(len(piles))] + rng.normal(0, spread, 2)
        stick = Stick((float(centre[0]), float(centre[1])), (np.cos(angle), np.sin(angle)), length, width, 0.0)
        bottom = max((s.top for s in sticks if _overlap(s, stick)), default=0.0)
        stick = Stick(stick.centre, stick.direction, length, width, bottom)
        ends = _project(np.array(stick.ends()), K, camera_height - stick.top)
        margin = stick.radius * K[0, 0] / (camera_height - stick.top) + 2
        inside = (ends.min(axis=0) >= margin).all() and (ends.max(axis=0) <= np.asarray(size) - 1 - margin).all()
        if bottom <= 0.08 and inside:
            sticks.append(stick)
    return sorted(sticks, key=lambda s: s.top)


def _project(points: np.ndarray, K: np.ndarray, depth: float) -> np.ndarray:
    """Pixels of table-frame (x, y) points lying at `depth` below the camera."""
    return points * (np.diag(K)[:2] / depth) + K[:2, 2]


def _table(rng: np.random.Generator, height: int, width: int, px_per_m: float) -> np.ndarray:
    """Albedo of the table top with flat clutter drawn on it, (H, W, 3) float32 BGR in [0, 1]."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.choice(["wood", "cloth", "laminate"])
    if kind == "wood":
        base = np.array([0.35, 0.55, 0.72], np.float32) * rng.uniform(0.6, 1.2)
        across, along = (u, v) if rng.random() < 0.5 else (v, u)
        plank = rng.uniform(0.08, 0.2) * px_per_m
        index = np.floor(across / plank + rng.random())
        tone = 1 + 0.12 * np.sin(index * 12.9898 + rng.uniform(0, 6))
        wobble = smooth_noise(rng, height, width, 40)
        grain = np.sin(2 * np.pi * (across / rng.uniform(4, 9) + 1.5 * wobble + index * 0.37))
        seam = np.abs(across / plank - np.round(across / plank)) * plank < 1.0
        shade = tone * (0.92 + 0.06 * grain) * np.where(seam, 0.55, 1.0)
    elif kind == "cloth":
        base = rng.uniform(0.25, 0.85, 3).astype(np.float32)
        period = rng.uniform(3, 6)
        weave = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        shade = 1 + 0.05 * weave + 0.08 * smooth_noise(rng, height, width, 60)
    else:
        base = rng.uniform(0.25, 0.85, 3).astype(np.float32)
        speckle = rng.random((height, width)) > 0.97
        shade = 1 + 0.05 * smooth_noise(rng, height, width, 80) - 0.2 * speckle
    albedo = shade[..., None] * base
    for _ in range(int(rng.integers(3, 13))):
        _clutter(rng, albedo, px_per_m)
    return np.clip(albedo, 0, 1)


def _clutter(rng: np.random.Generator, albedo: np.ndarray, px_per_m: float) -> None:
    """Draw one flat object: paper or a sticky note, a coaster, a pen stroke or tape, or a stain."""
    height, width = albedo.shape[:2]
    centre = rng.uniform((0, 0), (width, height))
    colour = tuple(float(c) for c in rng.uniform(0.1, 0.95, 3))
    kind = rng.choice(["paper", "coaster", "stroke", "stain"])
    if kind == "paper":
        size = rng.uniform(0.06, 0.25, 2) * px_per_m
        box = cv2.boxPoints(((float(centre[0]), float(centre[1])), tuple(size), float(rng.uniform(0, 180))))
        light = tuple(float(c) for c in rng.uniform(0.75, 0.97, 3))
        cv2.fillPoly(albedo, [np.round(box).astype(np.int32)], light, cv2.LINE_AA)
        for _ in range(int(rng.integers(0, 6))):  # printed lines
            p, q = box[0] + rng.random() * (box[3] - box[0]), box[1] + rng.random() * (box[2] - box[1])
            cv2.line(albedo, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)), (0.2, 0.2, 0.2), 1)
    elif kind == "coaster":
        radius = int(rng.uniform(0.03, 0.06) * px_per_m)
        cv2.circle(albedo, tuple(np.round(centre).astype(int)), radius, colour, -1, cv2.LINE_AA)
    elif kind == "stroke":
        direction = rng.normal(size=2)
        half = direction / np.linalg.norm(direction) * rng.uniform(0.03, 0.2) * px_per_m
        thickness = int(rng.integers(1, 4))
        p, q = np.round(centre - half).astype(int), np.round(centre + half).astype(int)
        cv2.line(albedo, tuple(p), tuple(q), colour, thickness, cv2.LINE_AA)
    else:
        stain = np.zeros((height, width), np.float32)
        axes = tuple(int(a) for a in rng.uniform(0.01, 0.05, 2) * px_per_m)
        cv2.ellipse(stain, tuple(np.round(centre).astype(int)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        stain = cv2.GaussianBlur(stain, (0, 0), 3)
        albedo *= 1 - 0.3 * stain[..., None]


def _bbox(points_px: np.ndarray, pad: float, height: int, width: int) -> tuple[slice, slice]:
    lo = np.floor(points_px.min(axis=0) - pad).astype(int)
    hi = np.ceil(points_px.max(axis=0) + pad).astype(int) + 1
    return slice(max(lo[1], 0), min(hi[1], height)), slice(max(lo[0], 0), min(hi[0], width))


def render_sticks(seed: int | np.random.SeedSequence, width: int = 640, height: int = 480) -> SticksScene:
    """One scene, the same for the same seed and size."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.85, 1.05) * width
    principal = np.array([width, height]) * (0.5 + rng.uniform(-0.02, 0.02, 2))
    K = np.array([[f, 0, principal[0]], [0, f, principal[1]], [0, 0, 1]])
    camera_height = float(rng.uniform(0.55, 0.8))
    sticks = _place_sticks(rng, K, camera_height, (width, height))
    # normalised image coordinates of the pixel centres: the table-frame point at depth d is (xn, yn) * d
    yn, xn = np.mgrid[0:height, 0:width].astype(np.float32)
    xn = (xn - np.float32(K[0, 2])) / np.float32(f)
    yn = (yn - np.float32(K[1, 2])) / np.float32(f)

    count = len(sticks)
    full_masks = np.zeros((count, height, width), bool)
    top = np.zeros((height, width), np.float32)
    owner = np.full((height, width), -1, np.int32)
    for k, stick in enumerate(sticks):  # bottom first: where two overlap, the later one is higher
        depth = camera_height - stick.top
        box = _bbox(_project(np.array(stick.ends()), K, depth), stick.radius * f / depth + 1, height, width)
        ox, oy = _stick_capsule(xn[box] * depth, yn[box] * depth, stick)
        inside = ox**2 + oy**2 <= stick.radius**2
        full_masks[k][box] = inside
        owner[box][inside] = k
        top[box][inside] = stick.top
    covers = np.zeros((count, count), bool)
    for k in range(count):
        for j in range(k):
            covers[k, j] = sticks[k].top > sticks[j].top and _overlap(sticks[k], sticks[j])

    elevation, azimuth = rng.uniform(np.radians(30), np.radians(65)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    shadow = np.zeros((height, width), np.float32)
    for stick in sticks:
        axis_z = stick.bottom + stick.radius
        ends = np.array(stick.ends())
        cast = ends - axis_z * light[:2] / light[2]  # where the axis's shadow falls on the table
        corners = np.vstack([_project(ends, K, camera_height - stick.top), _project(cast, K, camera_height)])
        box = _bbox(corners, stick.radius * f / (camera_height - stick.top) + 3, height, width)
        surface = top[box]
        reach = (axis_z - surface) / light[2]  # from a surface point toward the sun up to the axis height
        ox, oy = _stick_capsule(
            xn[box] * (camera_height - surface) + reach * light[0],
            yn[box] * (camera_height - surface) + reach * light[1],
            stick,
        )
        shadow[box] = np.maximum(shadow[box], (ox**2 + oy**2 <= stick.radius**2) & (surface < axis_z))
    shadow = cv2.GaussianBlur(shadow, (0, 0), 1.5)

    albedo = _table(rng, height, width, f / camera_height)
    normal = np.zeros((height, width, 3), np.float32)
    normal[..., 2] = 1
    on_stick = owner >= 0
    if count:
        depth = camera_height - np.array([s.top for s in sticks], np.float32)[owner[on_stick]]
        surface = _stick_surface(rng, sticks, owner[on_stick], xn[on_stick] * depth, yn[on_stick] * depth)
        albedo[on_stick], normal[on_stick] = surface
    image = apply_light(albedo, normal, light, shadow, rng.uniform(0.3, 0.45), on_stick * np.float32(0.5))
    return SticksScene(
        image=finish_image(rng, image),
        depth=(camera_height - top).astype(np.float32),
        instance_map=owner,
        full_masks=full_masks,
        sticks=tuple(sticks),
        covers=covers,
        camera=Calibration.pinhole(width, height, K),
        camera_height=camera_height,
    )


_STICK_PAINT = (  # (B, G, R) and texture: 0 wood grain, 1 plain paint, 2 painted bands
    ((0.47, 0.67, 0.82), 0),
    ((0.24, 0.37, 0.55), 0),
    ((0.14, 0.16, 0.78), 1),
    ((0.24, 0.59, 0.16), 1),
    ((0.75, 0.31, 0.16), 1),
    ((0.16, 0.78, 0.9), 1),
    ((0.12, 0.47, 0.9), 2),
    ((0.85, 0.87, 0.88), 2),
    ((0.16, 0.16, 0.16), 1),
)


def _stick_surface(
    rng: np.random.Generator, sticks: list[Stick], ks: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and surface normal of the visible stick pixels (`ks`: their stick, `x`, `y`: where they
    are on its top plane), all sticks at once. A scene uses one to three paints, so many sticks share
    a colour, as in the paper's figure."""
    starts = np.array([s.ends()[0] for s in sticks], np.float32)[ks]
    directions = np.array([s.direction for s in sticks], np.float32)[ks]
    segment = np.array([s.length - s.width for s in sticks], np.float32)[ks]
    radius = np.array([s.radius for s in sticks], np.float32)[ks]
    along, ox, oy = _capsule(x, y, starts, directions, segment)
    nz = np.sqrt(np.maximum(radius**2 - ox**2 - oy**2, 0))
    normal = np.stack([ox, oy, nz], axis=1) / radius[:, None]

    paints = rng.choice(len(_STICK_PAINT), size=int(rng.integers(1, 4)), replace=False)
    choice = paints[rng.integers(len(paints), size=len(sticks))]
    colours = np.array([_STICK_PAINT[c][0] for c in choice], np.float32) * rng.uniform(0.9, 1.1, (len(sticks), 1))
    kind = np.array([_STICK_PAINT[c][1] for c in choice])[ks]
    phase = rng.uniform(0, 2 * np.pi, len(sticks)).astype(np.float32)[ks]
    across = (ox * directions[:, 1] - oy * directions[:, 0]) / radius  # -1..1 over the width
    grain = np.sin(2 * np.pi * (2.5 * across + 0.4 * np.sin(along * 60 + phase)) + phase)
    band = rng.uniform(0.01, 0.03, len(sticks)).astype(np.float32)[ks]
    dark_band = np.floor(along / band) % 2 == 1
    shade = np.where(kind == 0, 0.88 + 0.12 * grain, 1.0) * np.where((kind == 2) & dark_band, 0.55, 1.0)
    return (colours[ks] * shade[:, None]).astype(np.float32), normal.astype(np.float32)


def scene_annotation(scene: SticksScene) -> list[dict[str, object]]:
    """Per-stick ground truth beyond the masks, JSON-ready: table-frame and image axes, stack level,
    whether it is free and which sticks lie on it."""
    out = []
    for k, stick in enumerate(scene.sticks):
        out.append(
            {
                "level": k,
                "free": bool(scene.free[k]),
                "covered_by": [int(j) for j in np.flatnonzero(scene.covers[:, k])],
                "axis_m": {
                    "centre": [stick.centre[0], stick.centre[1], stick.bottom + stick.radius],
                    "direction": list(stick.direction),
                    "length": stick.length,
                    "width": stick.width,
                    "top": stick.top,
                },
                "axis_px": scene.image_axis(k),
            }
        )
    return out


def sticks_scene(seed: int, index: int, width: int = 640, height: int = 480) -> SticksScene:
    """Scene `index` of the stream `seed`: it depends only on the two, so datasets, bags, the camera source
    and the held-out tests agree on it whatever renders it."""
    return render_sticks(np.random.SeedSequence([seed, index]), width, height)


def sticks_scenes(seed: int, count: int, width: int = 640, height: int = 480) -> Iterator[SticksScene]:
    """The first `count` scenes of the stream `seed`, rendered one at a time."""
    for index in range(count):
        yield sticks_scene(seed, index, width, height)


def _write_sticks(job: tuple[Path, str, int, int, int, int]) -> tuple[dict, list[dict]]:
    root, split, seed, index, width, height = job
    scene = sticks_scene(seed, index, width, height)
    name = f"{split}_{index:06d}"
    files = {"image": f"images/{name}.png", "depth": f"depth/{name}.npz", "instances": f"instances/{name}.png"}
    for key in files:
        (root / files[key]).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / files["image"]), scene.image)
    np.savez_compressed(root / files["depth"], depth=scene.depth)
    cv2.imwrite(str(root / files["instances"]), (scene.instance_map + 1).astype(np.uint16))
    image_id = index + 1
    image = {
        "id": image_id,
        "file_name": files["image"],
        "height": height,
        "width": width,
        "depth_file": files["depth"],
        "instance_file": files["instances"],
        "camera": {"K": scene.camera.K.tolist(), "height_m": scene.camera_height},
    }
    annotations = []
    for visible, full, extra in zip(scene.visible_masks(), scene.full_masks, scene_annotation(scene)):
        annotation = coco.mask_annotation(visible, 0, image_id, STICK_CATEGORY["id"])
        annotation["amodal_segmentation"] = coco.encode_segmentation(full)
        annotations.append(annotation | extra)
    return image, annotations


def generate_sticks_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int,
    split: str,
    workers: int = 2,
    progress: bool = True,
    width: int = 640,
    height: int = 480,
) -> Path:
    """Render `num_images` scenes into `out_dir/<split>/`: images/*.png, depth/*.npz (key "depth",
    float32 metres), instances/*.png (16-bit: 0 table, k + 1 the visible part of stick k, bottom of the stack
    first) and annotations.json (COCO instances with amodal masks, axes, stack levels and free flags).
    Image i depends only on (seed, i), so any worker count gives the same files. Returns the json path."""
    root = Path(out_dir) / split
    jobs = [(root, split, seed, i, width, height) for i in range(num_images)]
    json_path = root / "annotations.json"
    return write_dataset(_write_sticks, jobs, workers, progress, f"sticks {split}", json_path, [STICK_CATEGORY])


def overlay_sticks(scene: SticksScene) -> np.ndarray:
    """The image with each stick's visible outline (one colour per stick) and its axis: green for free
    sticks, red for sticks something lies on."""
    out = scene.image.copy()
    levels = np.linspace(0, 255, max(len(scene.sticks), 1)).astype(np.uint8)
    palette = cv2.applyColorMap(levels, cv2.COLORMAP_TURBO).reshape(-1, 3)
    for k in range(len(scene.sticks)):
        visible = (scene.instance_map == k).astype(np.uint8)
        contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in palette[k]), 2, cv2.LINE_AA)
        axis = scene.image_axis(k)
        half = 0.5 * (axis["length"] - axis["width"]) * np.array([np.cos(axis["angle"]), np.sin(axis["angle"])])
        p, q = np.asarray(axis["centre"]) - half, np.asarray(axis["centre"]) + half
        colour = (0, 220, 0) if scene.free[k] else (0, 0, 230)
        cv2.line(out, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)), colour, 2, cv2.LINE_AA)
    return out


def depth_view(scene: SticksScene) -> np.ndarray:
    """The depth image in false colour, near = bright, over the range the scene spans."""
    near, far = float(scene.depth.min()), scene.camera_height
    scaled = (far - scene.depth) / max(far - near, 1e-6) * 255
    return cv2.applyColorMap(scaled.astype(np.uint8), cv2.COLORMAP_INFERNO)


def preview_sticks(
    seed: int, count: int = 3, width: int = 640, height: int = 480, tile_width: int = 320
) -> np.ndarray:
    """A grid with one row per scene: the image, its outlines and axes, its depth."""
    tiles = []
    for index in range(count):
        scene = render_sticks(np.random.SeedSequence([seed, index]), width, height)
        tiles += [scene.image, overlay_sticks(scene), depth_view(scene)]
    return grid(tiles, cols=3, tile_width=tile_width)
