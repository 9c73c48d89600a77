"""Pinhole camera mounted on a vehicle, shared by the synthetic road generator and the lanes node's
ground projection.

Frames. The ground frame follows REP-103: x forward, y left, z up, origin on the road directly under the
camera. The camera optical frame has z forward, x right, y down (the ROS `*_optical_frame`). The camera
sits at (0, 0, height) and is turned from "looking straight ahead" by yaw about z (positive turns left),
then pitch about the rotated y (positive looks down) and roll about the optical axis (positive raises the
camera's left side, so the horizon drops on the left of the image). Angles are radians.

Pixels follow OpenCV: (u, v) with u to the right, v down, integer values at pixel centres. Distortion is
plumb_bob (k1, k2, p1, p2, k3); projection applies it, back-projection removes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from refine_perception.core.calibration import Calibration

# Camera optical axes expressed in the ground frame when yaw = pitch = roll = 0 (columns: x, y, z).
_OPTICAL_TO_GROUND = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


class CameraModelError(ValueError):
    """A camera parameter or an input array has the wrong shape or a non-finite value; says which."""


def _finite(values: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CameraModelError(f"{name} must be numeric, got {type(values).__name__}") from None
    if array.size != int(np.prod(shape)):
        raise CameraModelError(f"{name} has {array.size} values, expected {int(np.prod(shape))} {shape}")
    if not np.isfinite(array).all():
        raise CameraModelError(f"{name} contains NaN or infinity")
    return array.reshape(shape)


def _points(values: object, columns: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != columns:
        raise CameraModelError(f"{name} must have shape (N, {columns}), got {array.shape}")
    return array


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Optical-to-ground rotation (columns are the camera axes in the ground frame)."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    about_z = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    about_y = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    about_x = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return about_z @ about_y @ about_x @ _OPTICAL_TO_GROUND


def clip_near(polygon: np.ndarray, near: float) -> np.ndarray:
    """The part of a convex polygon (k, 3) in the optical frame that lies at depth >= near, so that it
    can be projected; (0, 3) when none does."""
    polygon = _points(polygon, 3, "polygon")
    ahead = polygon[:, 2] >= near
    if ahead.all():
        return polygon
    following = np.roll(polygon, -1, axis=0)
    crossing = ahead != np.roll(ahead, -1)
    with np.errstate(divide="ignore", invalid="ignore"):  # edges parallel to the plane never cross it
        t = (near - polygon[:, 2]) / (following[:, 2] - polygon[:, 2])
        cuts = polygon + t[:, None] * (following - polygon)
    # walk the edges: keep each vertex in front, then the crossing point of its edge if it has one
    rows = [row for k in range(len(polygon)) for row, keep in ((polygon[k], ahead[k]), (cuts[k], crossing[k])) if keep]
    return np.array(rows).reshape(-1, 3)


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """Intrinsics K (3x3), distortion D and image size, plus the mounting on the vehicle."""

    K: np.ndarray
    width: int
    height: int
    mount_height: float  # metres above the ground origin
    pitch: float = 0.0
    roll: float = 0.0
    yaw: float = 0.0
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))

    def __post_init__(self) -> None:
        K = _finite(self.K, (3, 3), "K")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1 or K[1, 0] or K[2, 0] or K[2, 1]:
            raise CameraModelError(f"K must be upper triangular with fx, fy > 0 and K[2,2] = 1, got {K.tolist()}")
        D = np.asarray(self.D, dtype=np.float64).ravel()
        if D.size not in (0, 4, 5, 8) or not np.isfinite(D).all():
            raise CameraModelError(f"D must hold 0, 4, 5 or 8 finite plumb_bob coefficients, got {D.tolist()}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CameraModelError(f"image size must be positive, got {self.width}x{self.height}")
        for name in ("mount_height", "pitch", "roll", "yaw"):
            if not np.isfinite(getattr(self, name)):
                raise CameraModelError(f"{name} must be finite, got {getattr(self, name)}")
        if self.mount_height <= 0:
            raise CameraModelError(f"mount_height must be positive, got {self.mount_height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ------------------------------------------------------------------ frames

    @cached_property
    def R(self) -> np.ndarray:
        """Optical-to-ground rotation."""
        return rotation(self.yaw, self.pitch, self.roll)

    @property
    def position(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.mount_height])

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.D))

    def to_optical(self, points: np.ndarray) -> np.ndarray:
        """Ground-frame points (N, 3) in the optical frame."""
        return (_points(points, 3, "points") - self.position) @ self.R

    # ------------------------------------------------------------------ projection

    def project(self, points: np.ndarray, near: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N, 2) of ground-frame points (N, 3) and a mask of those in front of the camera
        (optical depth > `near`); pixels of the others are NaN."""
        optical = self.to_optical(points)
        in_front = optical[:, 2] > near
        pixels = np.full((len(optical), 2), np.nan)
        depth = optical[in_front, 2:3]
        normalised = optical[in_front, :2] / depth
        if self.distorted:
            normalised = self._distort(normalised)
        pixels[in_front] = normalised * np.diag(self.K)[:2] + self.K[:2, 2]
        pixels[in_front, 0] += self.K[0, 1] * normalised[:, 1]
        return pixels, in_front

    def _distort(self, xy: np.ndarray) -> np.ndarray:
        d = np.zeros(8)
        d[: self.D.size] = self.D
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        return np.stack(
            [x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y],
            axis=1,
        )

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """Ground-frame directions (N, 3) of the rays through pixels (N, 2), scaled to optical depth 1."""
        pixels = _points(pixels, 2, "pixels")
        if self.distorted:
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
            normalised = cv2.undistortPoints(
                pixels.reshape(-1, 1, 2), self.K, self.D, None, None, criteria=criteria
            ).reshape(-1, 2)
        else:
            y = (pixels[:, 1] - self.K[1, 2]) / self.K[1, 1]
            x = (pixels[:, 0] - self.K[0, 2] - self.K[0, 1] * y) / self.K[0, 0]
            normalised = np.stack([x, y], axis=1)
        return np.column_stack([normalised, np.ones(len(normalised))]) @ self.R.T

    def backproject(self, pixels: np.ndarray, ground_z: float = 0.0) -> np.ndarray:
        """Ground-frame points (N, 3) where the rays through pixels (N, 2) meet the plane z = ground_z;
        NaN for rays that never reach it in front of the camera (at or above the horizon)."""
        rays = self.rays(pixels)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = (ground_z - self.mount_height) / rays[:, 2]
        out = self.position + scale[:, None] * rays
        out[~(scale > 0) | ~np.isfinite(scale)] = np.nan
        return out

    def horizon_row(self, u: float | np.ndarray | None = None) -> float | np.ndarray:
        """Row of the ideal (undistorted) horizon at column(s) u (default: the principal point column):
        the pixels whose rays run parallel to the ground plane."""
        line = np.linalg.inv(self.K).T @ (self.R.T @ np.array([0.0, 0.0, 1.0]))
        if abs(line[1]) < 1e-12:
            raise CameraModelError("the horizon is vertical in this image (roll of 90 degrees)")
        columns = self.K[0, 2] if u is None else np.asarray(u, dtype=np.float64)
        rows = -(line[0] * columns + line[2]) / line[1]
        return float(rows) if np.ndim(rows) == 0 else rows

    # ------------------------------------------------------------------ interchange

    def camera_info(self) -> dict[str, object]:
        """CameraInfo-style dict: K, R (identity: no rectification), P = [K | 0], flat row-major lists."""
        return {
            "width": self.width,
            "height": self.height,
            "distortion_model": "plumb_bob",
            "D": self.D.tolist(),
            "K": self.K.ravel().tolist(),
            "R": np.eye(3).ravel().tolist(),
            "P": np.hstack([self.K, np.zeros((3, 1))]).ravel().tolist(),
        }

    def extrinsics(self) -> dict[str, object]:
        return {
            "mount_height": self.mount_height,
            "pitch": self.pitch,
            "roll": self.roll,
            "yaw": self.yaw,
            "frames": "ground: x forward, y left, z up, origin on the road under the camera; "
            "optical: z forward, x right, y down; angles in radians",
        }

    @classmethod
    def from_camera_info(cls, info: Mapping[str, Any], extrinsics: Mapping[str, Any]) -> PinholeCamera:
        """Inverse of camera_info()/extrinsics(); also accepts the lower-case field names of the ROS 2
        message (k, d). Only the plumb_bob model is understood."""
        model = info.get("distortion_model", "plumb_bob") or "plumb_bob"
        if model != "plumb_bob":
            raise CameraModelError(f"distortion_model {model!r} is not supported (only plumb_bob)")
        try:
            K = info["K"] if "K" in info else info["k"]
            D = info.get("D", info.get("d", ()))
            width, height = int(info["width"]), int(info["height"])
            mount = float(extrinsics["mount_height"])
        except KeyError as missing:
            raise CameraModelError(f"camera description lacks {missing}") from None
        except (TypeError, ValueError) as error:
            raise CameraModelError(f"camera description has a malformed field: {error}") from None
        angles = {}
        for name in ("pitch", "roll", "yaw"):
            try:
                angles[name] = float(extrinsics.get(name, 0.0))
            except (TypeError, ValueError):
                raise CameraModelError(f"extrinsics {name} must be a number") from None
        return cls(_finite(K, (3, 3), "K"), width, height, mount, D=np.asarray(D, dtype=np.float64), **angles)


def camera_for_image(calibration: Calibration, width: int, height: int,
                     mounting: Mapping[str, float] | None = None) -> PinholeCamera:
    """The camera a calibration (a CameraInfo's contents) describes, checked against the `width` x `height`
    image it came with: a calibration for another size would misplace every point. Raises CameraModelError
    for that, a K that is not a pinhole matrix (all zeros, NaN, fx or fy <= 0) or bad distortion.
    `mounting` (mount_height, pitch, roll, yaw) matters only for projecting onto the ground; without it
    the camera stands 1 m above it, looking level."""
    if (calibration.width, calibration.height) != (width, height):
        raise CameraModelError(f"CameraInfo is for {calibration.width}x{calibration.height} images, "
                               f"the image is {width}x{height}")
    return PinholeCamera.from_camera_info(
        {"K": calibration.K, "D": calibration.D, "width": calibration.width, "height": calibration.height,
         "distortion_model": calibration.distortion_model},
        mounting or {"mount_height": 1.0},
    )
