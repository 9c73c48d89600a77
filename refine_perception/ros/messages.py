"""Message types by name ("pkg/msg/Name"), for nodes whose topics' types are chosen by parameter, and
CameraInfo to and from our camera model."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import numpy as np
from sensor_msgs.msg import CameraInfo

from refine_perception.core.calibration import Calibration
from refine_perception.core.camera import CameraModelError, PinholeCamera


def import_message_type(name: str) -> type:
    """The Python class of a ROS message type given as pkg/msg/Name (or pkg/Name)."""
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{name!r} is not a message type name like sensor_msgs/msg/Image")
    package, kind, type_name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, type_name)
    except (ImportError, AttributeError):
        raise ValueError(f"message type {name} is not installed (no {package}.{kind}.{type_name})") from None


def camera_info_message(calib: Calibration) -> CameraInfo:
    """The CameraInfo of `calib` (header left empty)."""
    return CameraInfo(
        height=calib.height,
        width=calib.width,
        distortion_model=calib.distortion_model,
        d=calib.D.astype(float).tolist(),
        k=np.asarray(calib.K, float).ravel().tolist(),
        r=np.asarray(calib.R, float).ravel().tolist(),
        p=np.asarray(calib.P, float).ravel().tolist(),
    )


def camera_from_info(info: CameraInfo, width: int, height: int,
                     mounting: Mapping[str, float] | None = None) -> PinholeCamera:
    """The camera a CameraInfo describes, checked against the `width` x `height` image it came with.
    Raises CameraModelError for another image size, a K that is not a pinhole matrix (all zeros, NaN,
    fx or fy <= 0) or bad distortion. `mounting` (mount_height, pitch, roll, yaw) matters only for
    projecting onto the ground; without it the camera stands 1 m above it, looking level."""
    if (info.width, info.height) != (width, height):
        raise CameraModelError(f"CameraInfo is for {info.width}x{info.height} images, the image is {width}x{height}")
    return PinholeCamera.from_camera_info(
        {"k": np.asarray(info.k, dtype=np.float64), "d": list(info.d), "width": info.width, "height": info.height,
         "distortion_model": info.distortion_model},
        mounting or {"mount_height": 1.0},
    )
