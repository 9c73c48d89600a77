"""Cityscapes-style street scenes for semantic and instance segmentation, rendered from a 3-D model.

World frame in metres: x to the right of the street, y along it (away from the camera), z up; the road
surface is z = 0. A pinhole camera at 1.2-1.7 m with random intrinsics, yaw, pitch and roll looks along
the street, so distant objects come out smaller and closer to the horizon. The street is a road with
lanes and markings, raised sidewalks with curbs, building boxes and hedges along both sides, a row of
buildings closing it (so no ground runs to the horizon), trees, street lights, parked and moving cars
and pedestrians. Every surface is a planar polygon or a sphere drawn into a z-buffer, so occlusion is
exact; faces are lit by a sun (Lambert plus a highlight on paint and glass) and objects cast shadows on
the ground.

Classes use the Cityscapes label ids, plus lane marking = 34 (see `formats.cityscapes`). Cars and
persons are instances with Cityscapes instance ids (class * 1000 + k).

The module also holds what both synthetic generators share: smooth noise, lighting, the final image
touches and the parallel dataset writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from refine_perception.core.calibration import Calibration
from refine_perception.core.camera import clip_near
from refine_perception.core.camera import rotation as camera_rotation
from refine_perception.data.formats import cityscapes, coco
from refine_perception.data.preview import grid
from refine_perception.data.synthetic.parallel import write_dataset
from refine_perception.data.synthetic.shading import apply_light, finish_image, smooth_noise

ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR = 7, 8, 11, 17, 21, 23, 24, 26
LANE_MARKING = cityscapes.LANE_MARKING.id
CATEGORIES = [
    {"id": PERSON, "name": "person", "supercategory": "human"},
    {"id": CAR, "name": "car", "supercategory": "vehicle"},
]
CITY = "synthetic"

# ----------------------------------------------------------------------------------- geometry


# REP-103 ground axes (x forward, y left, z up) in the street frame (x right, y forward, z up)
_GROUND_TO_STREET = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-street rotation with the angles of `core.camera` (yaw > 0 turns left, pitch > 0 looks
    down, roll about the optical axis)."""
    return _GROUND_TO_STREET @ camera_rotation(yaw, pitch, roll)


def _prism(bottom: np.ndarray, top: np.ndarray) -> list[np.ndarray]:
    """Faces of the convex solid spanned by two rings of k points (sides, top, bottom), each ordered so
    that its normal (right-hand rule) points out of the solid."""
    k = len(bottom)
    faces = [np.array([bottom[i], bottom[(i + 1) % k], top[(i + 1) % k], top[i]]) for i in range(k)]
    faces += [top.copy(), bottom.copy()]
    centre = np.vstack([bottom, top]).mean(axis=0)
    return [face if np.dot(_normal(face), face.mean(axis=0) - centre) > 0 else face[::-1] for face in faces]


def _normal(face: np.ndarray) -> np.ndarray:
    """Unit normal of a planar polygon (Newell's method, robust to collinear vertices)."""
    following = np.concatenate([face[1:], face[:1]])
    x, y, z = face.T
    fx, fy, fz = following.T
    n = np.array([np.dot(y - fy, z + fz), np.dot(z - fz, x + fx), np.dot(x - fx, y + fy)])
    return n / np.sqrt(n @ n)


def _facing(face: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The polygon with its vertex order chosen so that its normal points along `direction` (x, y)."""
    return face if np.dot(_normal(face)[:2], direction) > 0 else face[::-1]


def _ring(centre: np.ndarray, yaw: float, half_x: float, half_y: float, z: float) -> np.ndarray:
    """Rectangle at height z, rotated by yaw about the vertical (local x = heading)."""
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[half_x, half_y], [-half_x, half_y], [-half_x, -half_y], [half_x, -half_y]])
    xy = local @ np.array([[c, s], [-s, c]]) + centre[:2]
    return np.column_stack([xy, np.full(4, z)])


def _box(
    centre: np.ndarray,
    yaw: float,
    size: tuple[float, float],
    z0: float,
    z1: float,
    top_size: tuple[float, float] | None = None,
) -> list[np.ndarray]:
    """A box (or a frustum when `top_size` differs) standing on z0; size = (along the heading, across)."""
    top = top_size or size
    return _prism(_ring(centre, yaw, size[0] / 2, size[1] / 2, z0), _ring(centre, yaw, top[0] / 2, top[1] / 2, z1))


def _cylinder(centre: np.ndarray, radius: float, z0: float, z1: float, sides: int = 8) -> list[np.ndarray]:
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.column_stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)])
    return _prism(np.column_stack([ring, np.full(sides, z0)]), np.column_stack([ring, np.full(sides, z1)]))


# ----------------------------------------------------------------------------------- rendering

# surface materials: how the albedo is textured
_SKY, _ASPHALT, _PAVING, _PLAIN, _FACADE, _FOLIAGE = range(6)


@dataclass
class _Face:
    label: int
    instance: int  # object index, -1 for stuff
    material: int
    colour: np.ndarray  # BGR in [0, 1]
    origin: np.ndarray  # texture frame: a vertex and the direction of the face's first edge
    u_axis: np.ndarray
    shiny: float = 0.0


class _Canvas:
    """Z-buffer with the id of the visible face and its normal per pixel."""

    NEAR = 0.3

    def __init__(self, K: np.ndarray, R: np.ndarray, position: np.ndarray, width: int, height: int) -> None:
        self.K, self.R, self.position = K, R, position  # R: camera to world
        self.width, self.height = width, height
        v, u = np.mgrid[0:height, 0:width].astype(np.float32)
        self.rx = (u - np.float32(K[0, 2])) / np.float32(K[0, 0])
        self.ry = (v - np.float32(K[1, 2])) / np.float32(K[1, 1])
        # world direction of each pixel's ray, scaled so that its camera z component is 1
        rays = np.stack([self.rx, self.ry, np.ones_like(self.rx)], axis=-1)
        self.rays = rays @ R.T.astype(np.float32)
        self.depth = np.full((height, width), np.inf, np.float32)
        self.face = np.zeros((height, width), np.int32)
        self.normal = np.zeros((height, width, 3), np.float32)
        self.faces: list[_Face] = []

    def add_face(
        self,
        label: int,
        instance: int,
        material: int,
        colour: np.ndarray,
        shiny: float = 0.0,
        frame: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> int:
        origin, u_axis = frame or (np.zeros(3), np.array([1.0, 0, 0]))
        self.faces.append(_Face(label, instance, material, np.asarray(colour, np.float32), origin, u_axis, shiny))
        return len(self.faces) - 1

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (points - self.position) @ self.R

    def polygon(
        self, points: np.ndarray, label: int, instance: int, material: int, colour: np.ndarray, shiny: float = 0.0
    ) -> None:
        """Draw a planar convex polygon (world points, counter-clockwise seen from its front)."""
        normal = _normal(points)
        if np.dot(normal, self.position - points[0]) <= 0:
            return  # facing away
        cam = clip_near(self.to_camera(points), self.NEAR)
        if len(cam) < 3:
            return
        px = cam[:, :2] / cam[:, 2:] * np.diag(self.K)[:2] + self.K[:2, 2]
        box = self._bbox(px.min(axis=0), px.max(axis=0))
        if box is None:
            return
        edge = points[1] - points[0]
        fid = self.add_face(label, instance, material, colour, shiny, (points[0], edge / np.sqrt(edge @ edge)))
        rows, cols = box
        mask = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.uint8)
        local = np.round((px - [cols.start, rows.start]) * 16).astype(np.int32)
        cv2.fillPoly(mask, [local], 1, cv2.LINE_8, shift=4)
        n_cam = normal @ self.R
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.dot(n_cam, cam[0]) / (n_cam[0] * self.rx[box] + n_cam[1] * self.ry[box] + n_cam[2])
        self._write(box, mask.astype(bool) & (depth > 0), depth, fid, normal)

    def sphere(self, centre: np.ndarray, radius: float, fid: int) -> None:
        c = self.to_camera(centre)
        if c[2] - radius < self.NEAR:
            return
        # the silhouette's extent along x (and y): the two planes through the camera's y (x) axis that
        # touch the sphere
        angle = np.arctan2(c[:2], c[2])
        half = np.arcsin(radius / np.hypot(c[:2], c[2]))
        lo, hi = np.tan(angle - half), np.tan(angle + half)
        scale, principal = np.diag(self.K)[:2], self.K[:2, 2]
        box = self._bbox(lo * scale + principal - 1, hi * scale + principal + 1)
        if box is None:
            return
        rx, ry = self.rx[box], self.ry[box]
        a = rx**2 + ry**2 + 1
        b = rx * c[0] + ry * c[1] + c[2]
        disc = b**2 - a * (np.dot(c, c) - radius**2)
        depth = (b - np.sqrt(np.maximum(disc, 0))) / a
        normal = (np.stack([rx * depth, ry * depth, depth], axis=-1) - c) @ self.R.T / radius
        self._write(box, disc >= 0, depth, fid, normal.astype(np.float32))

    def _bbox(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice] | None:
        x0, y0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
        x1, y1 = min(int(np.ceil(hi[0])) + 1, self.width), min(int(np.ceil(hi[1])) + 1, self.height)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def _write(
        self, box: tuple[slice, slice], cover: np.ndarray, depth: np.ndarray, fid: int, normal: np.ndarray
    ) -> None:
        win = cover & (depth < self.depth[box])
        self.depth[box][win] = depth[win]
        self.face[box][win] = fid
        normals = self.normal[box]
        normals[win] = normal[win] if normal.ndim == 3 else normal

    def world_points(self) -> np.ndarray:
        """World point seen at every pixel (sky pixels give inf)."""
        with np.errstate(invalid="ignore"):
            return self.position.astype(np.float32) + self.depth[..., None] * self.rays

    def shadow_polygon(self, mask: np.ndarray, points: np.ndarray, light: np.ndarray) -> None:
        """Fill the image region of the ground shadow of a convex cloud of world points."""
        on_ground = points[:, :2] - points[:, 2:] / light[2] * light[:2]
        hull = cv2.convexHull(on_ground.astype(np.float32))[:, 0]
        cam = clip_near(self.to_camera(np.column_stack([hull, np.zeros(len(hull))])), self.NEAR)
        if len(cam) >= 3:
            px = cam[:, :2] / cam[:, 2:] * np.diag(self.K)[:2] + self.K[:2, 2]
            corners = np.round(np.clip(px, -1e5, 1e5) * 16).astype(np.int32)
            cv2.fillPoly(mask, [corners], 1, cv2.LINE_8, shift=4)


# ----------------------------------------------------------------------------------- the street

_BGR = {  # display colours (B, G, R) in [0, 1]
    "asphalt": (0.33, 0.33, 0.34),
    "paving": [(0.62, 0.64, 0.66), (0.52, 0.56, 0.66), (0.45, 0.47, 0.5)],
    "facade": [(0.75, 0.8, 0.85), (0.55, 0.6, 0.65), (0.35, 0.4, 0.62), (0.5, 0.62, 0.75), (0.8, 0.8, 0.78),
               (0.45, 0.45, 0.47), (0.6, 0.75, 0.85)],
    "foliage": [(0.15, 0.4, 0.25), (0.12, 0.33, 0.22), (0.2, 0.45, 0.35), (0.1, 0.3, 0.3)],
    "car": [(0.85, 0.85, 0.85), (0.12, 0.12, 0.12), (0.55, 0.55, 0.55), (0.15, 0.15, 0.7), (0.6, 0.3, 0.1),
            (0.2, 0.35, 0.15), (0.75, 0.75, 0.72), (0.1, 0.45, 0.8)],
    "clothes": [(0.15, 0.15, 0.15), (0.5, 0.3, 0.15), (0.7, 0.7, 0.7), (0.2, 0.2, 0.6), (0.3, 0.5, 0.3),
                (0.55, 0.45, 0.4), (0.2, 0.6, 0.8), (0.6, 0.2, 0.5)],
    "skin": [(0.6, 0.7, 0.85), (0.45, 0.55, 0.75), (0.25, 0.35, 0.5)],
    "hair": [(0.05, 0.07, 0.1), (0.15, 0.2, 0.3), (0.25, 0.45, 0.6), (0.5, 0.5, 0.5)],
}


def _pick(rng: np.random.Generator, name: str, jitter: float = 0.06) -> np.ndarray:
    """One of the named colours, brighter or darker by up to `jitter`, its hue shifted only slightly."""
    colours = _BGR[name]
    base = np.asarray(colours if isinstance(colours, tuple) else colours[rng.integers(len(colours))])
    return np.clip(base * rng.uniform(1 - jitter, 1 + jitter) * rng.uniform(0.97, 1.03, 3), 0, 1)


@dataclass(frozen=True)
class StreetScene:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    label_ids: np.ndarray  # (H, W) uint8 Cityscapes label ids (lane marking 34)
    instance_ids: np.ndarray  # (H, W) int32 Cityscapes instance ids
    camera: Calibration
    rotation: np.ndarray  # camera to world (x right, y along the street, z up)
    position: np.ndarray  # camera centre in the world, metres

    def instances(self) -> list[cityscapes.Instance]:
        return cityscapes.CityscapesAnnotation(self.label_ids, self.instance_ids).instances()


@dataclass(frozen=True)
class _Street:
    lanes: int
    lane_width: float
    road_half: float  # centre to curb
    curb: float  # curb height
    facade: tuple[float, float]  # x of the building line, left and right
    end: float  # y of the buildings closing the street
    parking: bool

    def sidewalk_x(self, rng: np.random.Generator, side: int) -> float:
        inner, outer = self.road_half + 0.5, abs(self.facade[side > 0]) - 0.5
        return side * rng.uniform(inner, max(inner, outer))


class _StreetBuilder:
    """Samples the street's objects and draws them into a canvas; keeps their shadow casters."""

    def __init__(self, rng: np.random.Generator, canvas: _Canvas, street: _Street) -> None:
        self.rng, self.canvas, self.street = rng, canvas, street
        self.casters: list[np.ndarray] = []  # point clouds whose ground shadow is drawn
        self.footprints: list[np.ndarray] = []  # car outlines darkened by ambient occlusion
        self.instances: list[int] = []  # class of each object index
        self.occupied: list[tuple[float, float, float]] = []  # (x, y, radius) taken on the ground

    def free(self, x: float, y: float, radius: float) -> bool:
        return all(np.hypot(x - ox, y - oy) > radius + r for ox, oy, r in self.occupied)

    def solid(
        self, faces: list[np.ndarray], label: int, instance: int, material: int, colour: np.ndarray, shiny: float = 0.0
    ) -> None:
        for face in faces:
            self.canvas.polygon(face, label, instance, material, colour, shiny)

    def buildings(self) -> None:
        rng, street = self.rng, self.street
        for side, x_line in zip((-1, 1), street.facade):
            park = rng.random() < 0.15
            y = -40.0
            while y < street.end:
                length = rng.uniform(8, 30)
                depth = 12.0
                centre = np.array([x_line + side * depth / 2, y + length / 2])
                if rng.random() < (0.8 if park else 0.15):
                    top = rng.uniform(2.2, 5)
                    faces = _box(centre, 0, (depth, length), 0, top)
                    self.solid(faces, VEGETATION, -1, _FOLIAGE, _pick(rng, "foliage"))
                else:
                    top = rng.uniform(6, 25)
                    faces = _box(centre, 0, (depth, length), 0, top)
                    self.solid(faces, BUILDING, -1, _FACADE, _pick(rng, "facade"))
                self.casters.append(np.vstack(faces))
                y += length
        x = -90.0
        while x < 90:  # the row closing the street, taller than the camera so no ground reaches the horizon
            length = rng.uniform(10, 30)
            faces = _box(np.array([x + length / 2, street.end + 8]), 0, (length, 16), 0, rng.uniform(8, 30))
            self.solid(faces, BUILDING, -1, _FACADE, _pick(rng, "facade"))
            x += length

    def trees(self) -> None:
        rng, street = self.rng, self.street
        for side in (-1, 1):
            if rng.random() < 0.45:
                continue
            y = rng.uniform(0, 12)
            while y < street.end - 10:
                x = side * (street.road_half + rng.uniform(0.8, 1.4))
                if self.free(x, y, 1.0):
                    self._tree(np.array([x, y]))
                y += rng.uniform(7, 15)

    def _tree(self, at: np.ndarray) -> None:
        rng, curb = self.rng, self.street.curb
        crown_base = rng.uniform(2.2, 3.8)
        trunk = _cylinder(at, rng.uniform(0.12, 0.22), curb, crown_base + 1, sides=6)
        self.solid(trunk, VEGETATION, -1, _PLAIN, np.array([0.2, 0.27, 0.33]) * rng.uniform(0.7, 1.2))
        fid = self.canvas.add_face(VEGETATION, -1, _FOLIAGE, _pick(rng, "foliage"))
        size = rng.uniform(1.2, 2.3)
        points = [np.vstack(trunk)]
        for _ in range(int(rng.integers(3, 7))):
            centre = np.array([at[0], at[1], crown_base + size]) + rng.normal(0, 0.45 * size, 3)
            radius = size * rng.uniform(0.55, 0.9)
            self.canvas.sphere(centre, radius, fid)
            points.append(centre + radius * np.vstack([np.eye(3), -np.eye(3)]))
        self.casters.append(np.vstack(points))
        self.occupied.append((float(at[0]), float(at[1]), 0.5))

    def poles(self) -> None:
        rng, street = self.rng, self.street
        for side in (-1, 1):
            y = rng.uniform(3, 25)
            while y < street.end - 5:
                x = side * (street.road_half + 0.4)
                if self.free(x, y, 0.4):
                    self._pole(np.array([x, y]), side)
                y += rng.uniform(18, 40)

    def _pole(self, at: np.ndarray, side: int) -> None:
        rng, curb = self.rng, self.street.curb
        colour = np.array([0.45, 0.47, 0.5]) * rng.uniform(0.7, 1.3)
        height = rng.uniform(4.5, 9)
        faces = _cylinder(at, rng.uniform(0.06, 0.12), curb, height)
        if rng.random() < 0.7:  # a street light with its arm over the road
            reach = rng.uniform(1, 2.5)
            arm = np.array([at[0] - side * reach / 2, at[1]])
            faces += _box(arm, 0, (reach, 0.1), height - 0.1, height)
            faces += _box(np.array([at[0] - side * reach, at[1]]), 0, (0.6, 0.28), height - 0.25, height - 0.05)
        self.solid(faces, POLE, -1, _PLAIN, colour, 0.3)
        self.casters.append(np.vstack(faces))
        self.occupied.append((float(at[0]), float(at[1]), 0.3))

    def cars(self) -> None:
        rng, street = self.rng, self.street
        half = street.lanes * street.lane_width / 2
        for lane in range(street.lanes):
            x_lane = -half + (lane + 0.5) * street.lane_width
            yaw = np.pi / 2 if lane >= street.lanes // 2 else -np.pi / 2  # drive on the right
            y = rng.uniform(7, 25)
            while y < min(street.end - 10, 90) and rng.random() < 0.75:
                self._car(np.array([x_lane + rng.normal(0, 0.25), y]), yaw + rng.normal(0, 0.03))
                y += rng.uniform(10, 30)
        if not street.parking:
            return
        for side in (-1, 1):
            if rng.random() < 0.35:
                continue
            y = rng.uniform(-4, 8)
            end = rng.uniform(30, min(street.end - 8, 90))
            while y < end:
                length = rng.uniform(3.8, 4.9)
                if rng.random() < 0.8:
                    x = side * (street.road_half - rng.uniform(1.0, 1.2))
                    heading = np.pi / 2 + (np.pi if rng.random() < 0.3 else 0) + rng.normal(0, 0.04)
                    self._car(np.array([x, y + length / 2]), heading, length)
                y += length + rng.uniform(0.6, 2.5)

    def _car(self, at: np.ndarray, yaw: float, length: float | None = None) -> None:
        rng = self.rng
        length = length or rng.uniform(3.8, 4.9)
        width, height = rng.uniform(1.7, 1.95), rng.uniform(1.4, 1.65)
        if not self.free(float(at[0]), float(at[1]), length / 2 - 0.3):
            return
        instance = len(self.instances)
        self.instances.append(CAR)
        paint = _pick(rng, "car", 0.1)
        waist = height * rng.uniform(0.5, 0.58)
        body = _box(at, yaw, (length, width), 0.28, waist, (length * 0.97, width * 0.98))
        self.solid(body, CAR, instance, _PLAIN, paint, 0.5)
        heading = np.array([np.cos(yaw), np.sin(yaw)])
        cabin_at = at - 0.06 * length * heading
        cabin = _box(cabin_at, yaw, (length * 0.6, width * 0.92), waist, height, (length * 0.4, width * 0.78))
        for face in cabin:
            roof = _normal(face)[2] > 0.9
            glass = np.array([0.2, 0.17, 0.15])
            self.canvas.polygon(face, CAR, instance, _PLAIN, paint if roof else glass, 0.5)
        lateral = np.array([-heading[1], heading[0]])
        radius = rng.uniform(0.3, 0.35)
        angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        rim = np.column_stack([np.outer(radius * np.cos(angles), heading), radius + radius * np.sin(angles)])
        for along in (0.33 * length, -0.33 * length):
            for side in (-1, 1):  # the outer face of each wheel, just outside the body
                middle = np.array([*(at + along * heading + side * (width / 2 + 0.01) * lateral), 0.0])
                wheel = _facing(middle + rim, side * lateral)
                self.canvas.polygon(wheel, CAR, instance, _PLAIN, np.array([0.06, 0.06, 0.07]))
        for end, colour in ((1, np.array([0.85, 0.88, 0.9])), (-1, np.array([0.1, 0.1, 0.75]))):
            for side in (-1, 1):  # lamps: quads a centimetre in front of the body's end faces
                middle = at + end * (length * 0.97 / 2 + 0.01) * heading + side * (width / 2 - 0.3) * lateral
                ring = _ring(middle, yaw + np.pi / 2, 0.15, 0.0, waist - 0.2)[[0, 1]]
                lamp = _facing(np.vstack([ring, ring[::-1] + [0, 0, 0.13]]), end * heading)
                self.canvas.polygon(lamp, CAR, instance, _PLAIN, colour, 0.5)
        self.casters.append(np.vstack(body + cabin))
        self.footprints.append(_ring(at, yaw, length / 2 + 0.1, width / 2 + 0.1, 0.0))
        self.occupied.append((float(at[0]), float(at[1]), length / 2))

    def persons(self) -> None:
        rng, street = self.rng, self.street
        for _ in range(int(rng.integers(0, 12))):
            side = int(rng.choice([-1, 1]))
            x, y = street.sidewalk_x(rng, side), rng.uniform(3, min(street.end - 5, 60))
            self._person(np.array([x, y]), np.pi / 2 * rng.choice([-1, 1]) + rng.normal(0, 0.4), street.curb)
        for _ in range(int(rng.integers(0, 4)) if rng.random() < 0.4 else 0):
            x, y = rng.uniform(-street.road_half + 0.5, street.road_half - 0.5), rng.uniform(5, 30)
            self._person(np.array([x, y]), rng.choice([0, np.pi]) + rng.normal(0, 0.3), 0.0)

    def _person(self, at: np.ndarray, yaw: float, ground: float) -> None:
        rng = self.rng
        if not self.free(float(at[0]), float(at[1]), 0.35):
            return
        instance = len(self.instances)
        self.instances.append(PERSON)
        tall = rng.uniform(1.5, 1.95)
        s = tall / 1.75
        heading = np.array([np.cos(yaw), np.sin(yaw)])
        lateral = np.array([-heading[1], heading[0]])
        stride = rng.uniform(0, 0.22) * s
        trousers, shirt = _pick(rng, "clothes"), _pick(rng, "clothes")
        skin, hair = _pick(rng, "skin"), _pick(rng, "hair")
        hip, shoulder = ground + 0.48 * tall, ground + 0.8 * tall
        faces: list[np.ndarray] = []
        for side, swing in ((-1, 1), (1, -1)):  # legs and arms swing opposite ways
            foot = at + side * 0.09 * s * lateral + swing * stride * heading
            hand = at + side * 0.24 * s * lateral - swing * stride * 0.6 * heading
            leg = _box(foot, yaw, (0.15 * s, 0.13 * s), ground, hip + 0.02)
            arm = _box(hand, yaw, (0.09 * s, 0.08 * s), hip, shoulder - 0.02)
            self.solid(leg, PERSON, instance, _PLAIN, trousers)
            self.solid(arm, PERSON, instance, _PLAIN, shirt)
            faces += leg + arm
        torso = _box(at, yaw, (0.23 * s, 0.4 * s), hip, shoulder, (0.2 * s, 0.36 * s))
        neck = _box(at, yaw, (0.08 * s, 0.08 * s), shoulder - 0.01, tall + ground - 0.2 * s)
        self.solid(torso, PERSON, instance, _PLAIN, shirt)
        self.solid(neck, PERSON, instance, _PLAIN, skin)
        radius = 0.11 * s
        head = np.array([at[0], at[1], ground + tall - radius])
        self.canvas.sphere(head, radius, self.canvas.add_face(PERSON, instance, _PLAIN, skin))
        hair_at = head + np.array([*(-0.02 * s * heading), 0.02 * s])
        self.canvas.sphere(hair_at, radius * 1.02, self.canvas.add_face(PERSON, instance, _PLAIN, hair))
        self.casters.append(np.vstack(faces + torso + [head + radius * np.vstack([np.eye(3), -np.eye(3)])]))
        self.occupied.append((float(at[0]), float(at[1]), 0.3))


def _draw_ground(canvas: _Canvas, street: _Street, faces: dict[str, int]) -> None:
    """Road (z = 0) between the curbs, raised sidewalks beyond them, and the curbs' vertical faces, by
    intersecting each pixel's ray with these planes."""
    rays, c = canvas.rays, canvas.position
    with np.errstate(divide="ignore", invalid="ignore"):
        down = rays[..., 2] < 0
        t_road = -c[2] / rays[..., 2]
        x_road = c[0] + t_road * rays[..., 0]
        t_walk = (street.curb - c[2]) / rays[..., 2]
        x_walk = c[0] + t_walk * rays[..., 0]
        on_road = down & (np.abs(x_road) <= street.road_half)
        on_walk = down & ~on_road & (np.abs(x_walk) >= street.road_half)
        on_curb = down & ~on_road & ~on_walk
        t_curb = (np.sign(x_road) * street.road_half - c[0]) / rays[..., 0]
    for cover, depth, fid, normal in (
        (on_road, t_road, faces["road"], np.array([0, 0, 1.0])),
        (on_walk, t_walk, faces["sidewalk"], np.array([0, 0, 1.0])),
    ):
        canvas.depth[cover] = depth[cover]
        canvas.face[cover] = fid
        canvas.normal[cover] = normal
    canvas.depth[on_curb] = t_curb[on_curb]
    canvas.face[on_curb] = faces["curb"]
    canvas.normal[on_curb] = np.column_stack(
        [-np.sign(x_road[on_curb]), np.zeros(on_curb.sum()), np.zeros(on_curb.sum())]
    )


def _markings(rng: np.random.Generator, street: _Street, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which road points are painted: dashed lane lines, a solid centre line, edge lines and sometimes a
    zebra crossing."""
    half = street.lanes * street.lane_width / 2
    painted = np.zeros(x.shape, bool)
    for j in range(1, street.lanes):
        line_x = -half + j * street.lane_width
        width = rng.uniform(0.12, 0.16)
        along = np.ones(x.shape, bool)
        if j != street.lanes // 2 or street.lanes % 2:
            dash, gap = rng.uniform(3, 6), rng.uniform(5, 12)
            along = (y + rng.uniform(0, 20)) % (dash + gap) < dash
        painted |= (np.abs(x - line_x) < width / 2) & along
    if street.road_half - half > 0.3:
        painted |= np.abs(np.abs(x) - half) < 0.1
    if rng.random() < 0.3:
        at = rng.uniform(8, 35)
        painted |= (np.abs(y - at) < 2) & ((x + 10) % 1.0 < 0.5) & (np.abs(x) < half)
    return painted


def _albedo(rng: np.random.Generator, canvas: _Canvas, points: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """Surface colour of every pixel: its face's base colour times a texture factor of its material
    (world-anchored on the ground and on facades, so textures shrink with distance)."""
    faces = canvas.faces
    material = np.array([f.material for f in faces], np.uint8)[canvas.face]
    colour = np.take(np.array([f.colour for f in faces], np.float32), canvas.face, axis=0)
    fade = np.clip(12 / np.maximum(canvas.depth, 1e-3), 0.1, 1)  # texture contrast falls with distance
    factor = 1 + 0.02 * rng.standard_normal(canvas.depth.shape, dtype=np.float32)

    sel = material == _ASPHALT
    tile = 0.7 * smooth_noise(rng, 256, 256, 5) + 0.3 * rng.standard_normal((256, 256), dtype=np.float32)
    ix = np.floor(points[sel, 0] / 0.04).astype(np.int64) % 256  # 4 cm texels
    iy = np.floor(points[sel, 1] / 0.04).astype(np.int64) % 256
    factor[sel] += 0.12 * tile[iy, ix] * fade[sel] + 0.05 * smooth_noise(rng, *canvas.depth.shape, 90)[sel]

    sel = material == _PAVING
    size = rng.uniform(0.3, 0.6)
    gx, gy = points[sel, 0] / size % 1, points[sel, 1] / size % 1
    joint = (np.minimum(gx, 1 - gx) < 0.04) | (np.minimum(gy, 1 - gy) < 0.04)
    factor[sel] -= 0.25 * joint * fade[sel]

    sel = material == _FOLIAGE
    leaves = smooth_noise(rng, *canvas.depth.shape, 3)[sel]
    factor[sel] = np.clip(0.8 + 0.35 * leaves + 8 * (factor[sel] - 1), 0.4, 1.4)

    sel = material == _FACADE
    face_ids = canvas.face[sel]
    u_axis = np.array([f.u_axis[:2] for f in faces], np.float32)  # facades are vertical: u is horizontal
    offset = np.array([f.origin[:2] @ f.u_axis[:2] for f in faces], np.float32)
    ids = np.arange(len(faces))
    spacing = (2.4 + 1.6 * (ids * 0.618 % 1)).astype(np.float32)[face_ids]  # per-building window rhythm
    floor = (3.0 + 0.6 * (ids * 0.377 % 1)).astype(np.float32)[face_ids]
    u = points[sel, 0] * u_axis[face_ids, 0] + points[sel, 1] * u_axis[face_ids, 1] - offset[face_ids]
    z = points[sel, 2]
    fu, fz = u / spacing % 1, z / floor % 1
    window = (np.abs(fu - 0.5) < 0.22) & (fz > 0.3) & (fz < 0.8) & (z > floor * 0.9)
    window |= (z < floor * 0.9) & (z > 0.4) & (np.abs(fu - 0.5) < 0.4) & (face_ids % 3 == 0)  # shop fronts
    glass = np.flatnonzero(sel)[window]
    colour.reshape(-1, 3)[glass] = np.array([0.35, 0.3, 0.25], np.float32)
    factor.ravel()[glass] = 0.8 + 0.2 * fz[window]

    albedo = colour * factor[..., None]
    wear = np.clip(0.9 + 4 * (factor[marked] - 1), 0.7, 1)
    albedo[marked] = np.array([0.85, 0.87, 0.88], np.float32) * wear[:, None]
    sel = material == _SKY
    rays = canvas.rays[sel]
    elevation = np.clip(rays[:, 2] / np.sqrt(np.einsum("ij,ij->i", rays, rays)), 0, 1)
    horizon, zenith = np.array([0.92, 0.88, 0.85]), np.array([0.85, 0.6, 0.4]) * rng.uniform(0.85, 1.1)
    clouds = np.clip(smooth_noise(rng, *canvas.depth.shape, 70)[sel] * rng.uniform(0.2, 0.6), 0, 1)
    sky = horizon + np.clip(elevation * 3, 0, 1)[:, None] * (zenith - horizon)
    albedo[sel] = sky + clouds[:, None] * (0.95 - sky)
    return albedo


def _sample_street(rng: np.random.Generator) -> _Street:
    lanes, lane_width = int(rng.integers(2, 5)), rng.uniform(3.0, 3.6)
    shoulder = rng.uniform(0.3, 2.5)
    road_half = lanes * lane_width / 2 + shoulder
    return _Street(
        lanes=lanes,
        lane_width=lane_width,
        road_half=road_half,
        curb=rng.uniform(0.1, 0.15),
        facade=(-road_half - rng.uniform(2, 5), road_half + rng.uniform(2, 5)),
        end=rng.uniform(70, 220),
        parking=shoulder > 2.0,  # room for a row of parked cars along each curb
    )


def _sample_camera(
    rng: np.random.Generator, street: _Street, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intrinsics, camera-to-world rotation and position of a camera in one of the right-hand lanes."""
    f = rng.uniform(0.95, 1.2) * width  # Cityscapes: 2262 px over 2048
    K = np.array(
        [
            [f, 0, width / 2 + rng.uniform(-0.02, 0.02) * width],
            [0, f * rng.uniform(0.995, 1.005), height / 2 + rng.uniform(-0.04, 0.04) * height],
            [0, 0, 1],
        ]
    )
    lane = int(rng.integers(street.lanes // 2, street.lanes))
    x = (lane + 0.5 - street.lanes / 2) * street.lane_width + rng.uniform(-0.3, 0.3)
    position = np.array([x, 0.0, rng.uniform(1.2, 1.7)])
    rotation = _rotation(*np.radians([rng.uniform(-6, 6), rng.uniform(-0.5, 2.5), rng.uniform(-1.5, 1.5)]))
    return K, rotation, position


def _shade(
    rng: np.random.Generator,
    canvas: _Canvas,
    builder: _StreetBuilder,
    ground: np.ndarray,
    albedo: np.ndarray,
) -> np.ndarray:
    """Sunlight (or an overcast sky) on the albedo: shadows of every object on the ground, a darker
    patch under cars, highlights on paint and glass; the sky keeps its own colour."""
    height, width = ground.shape
    overcast = rng.random() < 0.3
    elevation, azimuth = np.radians(rng.uniform(15, 60)), rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    shadow = np.zeros((height, width), np.uint8)
    if not overcast:
        for cloud in builder.casters:
            canvas.shadow_polygon(shadow, cloud, sun)
    under_cars = np.zeros((height, width), np.uint8)
    for outline in builder.footprints:
        canvas.shadow_polygon(under_cars, outline, sun)
    contact = cv2.GaussianBlur(under_cars.astype(np.float32), (0, 0), 2)
    shade = cv2.GaussianBlur(np.clip(shadow + 0.5 * contact, 0, 1), (0, 0), 0.8) * ground
    shiny = np.array([f.shiny for f in canvas.faces], np.float32)[canvas.face]
    view = -canvas.rays / np.sqrt(np.einsum("...k,...k->...", canvas.rays, canvas.rays))[..., None]
    ambient = rng.uniform(0.7, 0.8) if overcast else rng.uniform(0.35, 0.55)
    image = apply_light(albedo, canvas.normal, sun, shade, ambient, shiny, view)
    sky = canvas.face == 0
    image[sky] = albedo[sky]
    return image * rng.uniform(0.85, 1.1)  # exposure


def render_street(seed: int | np.random.SeedSequence, width: int = 1024, height: int = 512) -> StreetScene:
    """One street scene, the same for the same seed and size."""
    rng = np.random.default_rng(seed)
    street = _sample_street(rng)
    K, rotation, position = _sample_camera(rng, street, width, height)
    canvas = _Canvas(K, rotation, position, width, height)
    faces = {  # face 0, drawn wherever nothing else is, is the sky
        "sky": canvas.add_face(SKY, -1, _SKY, np.zeros(3)),
        "road": canvas.add_face(ROAD, -1, _ASPHALT, _pick(rng, "asphalt", 0.15)),
        "sidewalk": canvas.add_face(SIDEWALK, -1, _PAVING, _pick(rng, "paving")),
        "curb": canvas.add_face(SIDEWALK, -1, _PLAIN, np.array([0.7, 0.7, 0.7])),
    }
    _draw_ground(canvas, street, faces)
    builder = _StreetBuilder(rng, canvas, street)
    builder.buildings()
    builder.trees()
    builder.poles()
    builder.cars()
    builder.persons()

    label_ids = np.array([f.label for f in canvas.faces], np.uint8)[canvas.face]
    on_road = canvas.face == faces["road"]
    points = canvas.world_points()
    marked = np.zeros(on_road.shape, bool)
    marked[on_road] = _markings(rng, street, points[on_road, 0], points[on_road, 1])
    label_ids[marked] = LANE_MARKING
    ground = np.isin(canvas.face, [faces["road"], faces["sidewalk"], faces["curb"]])
    image = _shade(rng, canvas, builder, ground, _albedo(rng, canvas, points, marked))

    owner = np.array([f.instance for f in canvas.faces])[canvas.face]
    visible = [i for i in range(len(builder.instances)) if (owner == i).any()]
    instance_ids = cityscapes.instance_ids_from_masks(
        label_ids, [owner == i for i in visible], [builder.instances[i] for i in visible]
    )
    return StreetScene(
        image=finish_image(rng, image),
        label_ids=label_ids,
        instance_ids=instance_ids,
        camera=Calibration.pinhole(width, height, K),
        rotation=rotation,
        position=position,
    )


def _write_street(job: tuple[Path, str, int, int, int, int]) -> tuple[dict, list[dict]]:
    root, split, seed, index, width, height = job
    scene = render_street(np.random.SeedSequence([seed, index]), width, height)
    paths = cityscapes.write_sample(root, split, CITY, index, 0, scene.image, scene.label_ids, scene.instance_ids)
    image_id = index + 1
    image = {
        "id": image_id,
        "file_name": paths.image.relative_to(root).as_posix(),
        "height": height,
        "width": width,
        "camera": {"K": scene.camera.K.tolist(), "R": scene.rotation.tolist(), "position": scene.position.tolist()},
    }
    annotations = [
        coco.mask_annotation(inst.mask, 0, image_id, inst.class_id) | {"cityscapes_id": inst.instance_id}
        for inst in scene.instances()
    ]
    return image, annotations


def generate_street_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int,
    split: str,
    workers: int = 2,
    progress: bool = True,
    width: int = 1024,
    height: int = 512,
) -> Path:
    """Render `num_images` street scenes into `out_dir` in Cityscapes layout (leftImg8bit/, gtFine/ with
    city "synthetic", sequence = image index) plus COCO instances in annotations/instances_<split>.json.
    Image i depends only on (seed, i), so any worker count gives the same files. Returns the json path."""
    root = Path(out_dir)
    jobs = [(root, split, seed, i, width, height) for i in range(num_images)]
    json_path = root / "annotations" / f"instances_{split}.json"
    return write_dataset(_write_street, jobs, workers, progress, f"street {split}", json_path, CATEGORIES)


def overlay_street(scene: StreetScene) -> np.ndarray:
    """The image under its semantic map in Cityscapes colours (lane marking white), with each car and
    person outlined."""
    out = cv2.addWeighted(scene.image, 0.4, cityscapes.colorize(scene.label_ids), 0.6, 0)
    for instance in scene.instances():
        mask = instance.mask.astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def preview_street(
    seed: int, count: int = 3, width: int = 1024, height: int = 512, tile_width: int = 480
) -> np.ndarray:
    """A grid with one row per scene: the image and its ground truth."""
    tiles = []
    for index in range(count):
        scene = render_street(np.random.SeedSequence([seed, index]), width, height)
        tiles += [scene.image, overlay_street(scene)]
    return grid(tiles, cols=2, tile_width=tile_width)
