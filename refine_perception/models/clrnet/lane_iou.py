"""LaneIoU (CLRerNet, Honda & Uchida, WACV 2024): Line IoU whose band around each row's x widens with the
lane's local slope, by 1 / cos of its angle, so it grows like the area a 30-px-wide drawn lane covers on
that row in the CULane metric. With one fixed half-width, a row where the lane runs nearly sideways (the
far end of a curve) is judged far more harshly than the metric judges it, and a steep lane counts for
less of the IoU than it does in the metric.

Slopes are taken in the geometry of the cropped CULane frame (1640 x 320 pixels, 71 strips), whatever
the input size, as CLRerNet does; each lane's band comes from its own xs (the prediction's without a
gradient). Target rows next to an absent row use the plain half-width.
"""

from __future__ import annotations

import torch

from refine_perception.models.clrnet.line_iou import line_iou
from refine_perception.models.clrnet.priors import IMG_W, N_STRIPS

LANE_IOU_RADIUS = 7.5  # half-width at a vertical row, pixels of the 800-wide input: 30 px drawn at 1640
FRAME_W, FRAME_H = 1640, 320  # the cropped CULane frame the slopes are measured in
_MAX_STEP = 1e4  # a larger jump between neighbour rows means one of them is absent


def lane_half_widths(xs: torch.Tensor, img_w: int = IMG_W, radius: float = LANE_IOU_RADIUS) -> torch.Tensor:
    """(N, R) half-widths of lanes given as (N, R) xs in pixels of an `img_w`-wide input."""
    dy = 2 * FRAME_H / N_STRIPS  # central difference over two strips
    dx = (xs[:, 2:] - xs[:, :-2]) * (FRAME_W / img_w)
    dx = torch.where(dx.abs() > _MAX_STEP, torch.zeros_like(dx), dx)
    half = radius * torch.sqrt(dx * dx + dy * dy) / dy
    return torch.cat([half[:, :1], half, half[:, -1:]], dim=1)


def lane_iou(pred_xs: torch.Tensor, target_xs: torch.Tensor, img_w: int, radius: float = LANE_IOU_RADIUS,
             aligned: bool = True) -> torch.Tensor:
    """LaneIoU of lanes given as xs in pixels, with `line_iou`'s shapes and rows."""
    widths = (lane_half_widths(pred_xs.detach(), img_w, radius), lane_half_widths(target_xs, img_w, radius))
    return line_iou(pred_xs, target_xs, img_w, widths, aligned)


def lane_iou_loss(pred_xs: torch.Tensor, target_xs: torch.Tensor, img_w: int,
                  radius: float = LANE_IOU_RADIUS) -> torch.Tensor:
    """Mean of 1 - LaneIoU over matched (prediction, target) pairs, xs in pixels."""
    return (1.0 - lane_iou(pred_xs, target_xs, img_w, radius, aligned=True)).mean()
