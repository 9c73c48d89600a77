"""What the instance pipeline says about one object, without ROS: the ground truth of a synthetic scene,
a model's prediction and a decoded refine_msgs/Instance are all this, so scoring, drawing and message
building each exist once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OrientedBox:
    """Rotated rectangle in image pixels; `theta` is the long side's angle from +x towards +y (clockwise
    on screen), in (-pi/2, pi/2], as in refine_msgs/OrientedBox2D."""

    center_x: float
    center_y: float
    theta: float
    length: float
    width: float


@dataclass(frozen=True)
class Grasp:
    """A parallel-gripper grasp in the camera's optical frame (metres): the fingers close along
    `closing`, the hand approaches along `approach`; `width` is the opening needed and `score` the
    confidence that nothing lies on the object (so that lifting it disturbs nothing)."""

    position: tuple[float, float, float]
    closing: tuple[float, float, float]
    approach: tuple[float, float, float]
    width: float
    score: float


@dataclass
class InstanceResult:
    """One object: its visible pixels over the full image (bool, H x W), confidence, class, and for
    elongated objects the rotated box and a grasp."""

    mask: np.ndarray
    score: float
    class_id: int = 0
    class_name: str = "stick"
    box: OrientedBox | None = None
    grasp: Grasp | None = None
