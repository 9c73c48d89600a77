"""The ground truth of a rendered sticks scene as `InstanceResult`s, so truth and predictions go through
the same messages, drawing and scoring.

Frames. sticks.py's `_project` maps a table-frame point (x, y) at depth d below the camera to the pixel
(fx x / d + cx, fy y / d + cy), and depth is `camera_height - z`: the table frame's origin is the foot of
the optical axis on the table, with x along the image columns and y along the rows. A table point
(x, y, z) is therefore (x, y, camera_height - z) in the camera's optical frame (x right, y down, z along
the optical axis), which is what the grasps here are written in.
"""

from __future__ import annotations

import math
from typing import Any

from refine_perception.data.synthetic.sticks import SticksScene
from refine_perception.instances.grasps import APPROACH
from refine_perception.instances.result import Grasp, InstanceResult, OrientedBox


def stick_box(scene: SticksScene, k: int) -> OrientedBox:
    """Stick k's whole silhouette (hidden parts included) as a rotated box in pixels."""
    axis: dict[str, Any] = scene.image_axis(k)
    theta = float(axis["angle"])  # in (-pi, pi]; a box's long side is in (-pi/2, pi/2]
    theta = theta - math.pi if theta > math.pi / 2 else theta + math.pi if theta <= -math.pi / 2 else theta
    (x, y), length, width = axis["centre"], axis["length"], axis["width"]
    return OrientedBox(float(x), float(y), theta, float(length), float(width))


def stick_grasp(scene: SticksScene, k: int) -> Grasp:
    """The ideal grasp of stick k: on its axis at its middle, closing across it, with the opening
    equal to the stick's width."""
    stick = scene.sticks[k]
    dx, dy = stick.direction
    position = (float(stick.centre[0]), float(stick.centre[1]), scene.camera_height - (stick.bottom + stick.radius))
    return Grasp(position, (-float(dy), float(dx), 0.0), APPROACH, float(stick.width), 1.0)


def scene_truth(scene: SticksScene) -> list[InstanceResult]:
    """One instance per stick with a visible pixel, bottom of the stack first: its visible mask, score
    1, its whole silhouette's box and, for sticks nothing lies on, `stick_grasp` (None for the others)."""
    truth = []
    for k, (mask, free) in enumerate(zip(scene.visible_masks(), scene.free)):
        if mask.any():
            grasp = stick_grasp(scene, k) if free else None
            truth.append(InstanceResult(mask=mask, score=1.0, box=stick_box(scene, k), grasp=grasp))
    return truth
