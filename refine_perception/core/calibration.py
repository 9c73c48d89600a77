"""Camera calibration files in the ROS camera_calibration YAML format (what camera_info_manager reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml


class CalibrationError(ValueError):
    """A calibration file is missing a field or has one of the wrong size; the message names both."""


@dataclass(frozen=True)
class Calibration:
    width: int
    height: int
    K: np.ndarray  # 3×3 intrinsics
    D: np.ndarray  # distortion coefficients
    R: np.ndarray  # 3×3 rectification
    P: np.ndarray  # 3×4 projection
    distortion_model: str = "plumb_bob"
    camera_name: str = ""

    @classmethod
    def pinhole(cls, width: int, height: int, K: np.ndarray) -> Calibration:
        """An ideal camera: no distortion, no rectification, P = [K | 0]."""
        K = np.asarray(K, float).reshape(3, 3)
        return cls(width, height, K, np.zeros(5), np.eye(3), np.hstack([K, np.zeros((3, 1))]))


def _matrix(doc: dict, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        values = np.asarray(doc[key]["data"], dtype=float)
    except (KeyError, TypeError):
        raise CalibrationError(f"{path}: missing {key}.data") from None
    except ValueError:
        raise CalibrationError(f"{path}: {key}.data must be a list of numbers") from None
    if values.size != int(np.prod(shape)):
        raise CalibrationError(f"{path}: {key} has {values.size} values, expected {int(np.prod(shape))}")
    if not np.isfinite(values).all():
        raise CalibrationError(f"{path}: {key} contains NaN or infinity")
    return values.reshape(shape)


def load_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as error:
        raise CalibrationError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise CalibrationError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(doc, dict):
        raise CalibrationError(f"{path}: expected a mapping with image_width, camera_matrix, ...")
    try:
        width, height = int(doc["image_width"]), int(doc["image_height"])
    except (KeyError, TypeError, ValueError):
        raise CalibrationError(f"{path}: image_width and image_height must be integers") from None
    distortion = doc.get("distortion_coefficients", {"data": [0.0] * 5})
    count = len(distortion.get("data") or []) if isinstance(distortion, dict) else 0
    D = _matrix(doc, "distortion_coefficients", (count,), path) if "distortion_coefficients" in doc else np.zeros(5)
    K = _matrix(doc, "camera_matrix", (3, 3), path)
    R = _matrix(doc, "rectification_matrix", (3, 3), path) if "rectification_matrix" in doc else np.eye(3)
    P = (
        _matrix(doc, "projection_matrix", (3, 4), path)
        if "projection_matrix" in doc
        else np.hstack([K, np.zeros((3, 1))])
    )
    return Calibration(
        width, height, K, D, R, P, str(doc.get("distortion_model", "plumb_bob")), str(doc.get("camera_name", ""))
    )
