"""Message types by name ("pkg/msg/Name"), for nodes whose topics' types are chosen by parameter, and
CameraInfo to and from our calibration type."""

from __future__ import annotations

import importlib

import numpy as np
from sensor_msgs.msg import CameraInfo

from refine_perception.core.calibration import Calibration


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


def calibration_from_info(info: CameraInfo) -> Calibration:
    """The ROS-free contents of a CameraInfo (inverse of `camera_info_message`), taken as they are:
    whether they describe a usable camera is for the pipeline to find (core.camera.camera_for_image)."""
    return Calibration(
        width=info.width,
        height=info.height,
        K=np.asarray(info.k, dtype=np.float64).reshape(3, 3),
        D=np.asarray(info.d, dtype=np.float64),
        R=np.asarray(info.r, dtype=np.float64).reshape(3, 3),
        P=np.asarray(info.p, dtype=np.float64).reshape(3, 4),
        distortion_model=info.distortion_model,
    )
