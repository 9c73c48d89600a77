"""CLRNet's lane priors: the fixed row layout every lane tensor uses, the official initial prior set, and
the straight line a prior (start_y, start_x, theta) describes.

A lane is 72 x-coordinates at fixed rows, `prior_ys = linspace(1, 0, 72)` of the 800x320 network input
(row 0 is the image bottom). xs are normalised by `img_w - 1`, start_y by the height, theta is the
lane's angle divided by pi. The network refines the three parameters of each prior and regenerates its
line at every stage, so `prior_lines` is written with plain broadcasting to stay ONNX-exportable.
"""

from __future__ import annotations

import math

import torch

NUM_POINTS = 72
N_STRIPS = NUM_POINTS - 1  # lengths and start rows are counted in strips between the 72 rows
LANE_FIELDS = 6 + NUM_POINTS  # a lane tensor: 2 logits, start_y, start_x, theta, length, 72 xs
NUM_PRIORS = 192
SAMPLE_POINTS = 36  # rows per prior where the head pools features
IMG_W = 800
IMG_H = 320


def prior_ys() -> torch.Tensor:
    """The 72 normalised rows of a lane, from the bottom (1.0) to the top (0.0) of the input."""
    return torch.linspace(1.0, 0.0, NUM_POINTS, dtype=torch.float32)


def sample_indices(sample_points: int = SAMPLE_POINTS) -> torch.Tensor:
    """The rows (36 of the 72 officially) where prior features are pooled: the official
    `long(linspace(0, 1, 36) * 71)`, computed in float32 as the official buffer is, so the truncation
    lands on the same rows."""
    if not 2 <= sample_points <= NUM_POINTS:
        raise ValueError(f"sample_points must be in [2, {NUM_POINTS}], got {sample_points}")
    return (torch.linspace(0.0, 1.0, sample_points, dtype=torch.float32) * N_STRIPS).long()


def init_prior_params(num_priors: int = NUM_PRIORS) -> torch.Tensor:
    """The official initial (start_y, start_x, theta) of the priors, shape (num_priors, 3).

    An eighth of the priors start on the left border and an eighth on the right border, in pairs at
    heights stepping up to half the image with two angles each (0.16/0.32 left, 0.68/0.84 right);
    the remaining three quarters start on the bottom row at evenly spaced xs with four angles each
    (0.2, 0.4, 0.6, 0.8). For 192 priors: 24 left, 144 bottom (start_x = k/37), 24 right, side
    heights (i // 2) * 0.5 / 11.
    """
    if num_priors < 32 or num_priors % 8:
        raise ValueError(f"num_priors must be a multiple of 8 and at least 32, got {num_priors}")
    side = num_priors // 8
    bottom = num_priors - 2 * side
    side_step = 0.5 / (side // 2 - 1)
    bottom_step = 1.0 / (bottom // 4 + 1)

    side_index = torch.arange(side, dtype=torch.float64)
    side_y = torch.div(side_index, 2, rounding_mode="floor") * side_step
    even = side_index.remainder(2) == 0
    left = torch.stack([side_y, torch.zeros(side, dtype=torch.float64), torch.where(even, 0.16, 0.32)], 1)
    right = torch.stack([side_y, torch.ones(side, dtype=torch.float64), torch.where(even, 0.68, 0.84)], 1)

    bottom_index = torch.arange(bottom, dtype=torch.float64)
    bottom_x = (torch.div(bottom_index, 4, rounding_mode="floor") + 1) * bottom_step
    bottom_theta = 0.2 * (bottom_index.remainder(4) + 1)
    middle = torch.stack([torch.zeros(bottom, dtype=torch.float64), bottom_x, bottom_theta], 1)
    return torch.cat([left, middle, right]).float()


def prior_lines(params: torch.Tensor, img_w: int = IMG_W, img_h: int = IMG_H) -> torch.Tensor:
    """Normalised xs (..., 72) of the straight lines given by `params` (..., 3) = (start_y, start_x, theta).

    The line passes through (start_x, start_y) with angle theta * pi to the horizontal; the official
    formula adds 1e-5 to the angle so a horizontal prior does not divide by tan(0) = 0.
    """
    # checked in eager mode only: under ONNX tracing the shape is fixed and the check would only warn
    if not torch.jit.is_tracing() and (params.dim() == 0 or params.shape[-1] != 3):
        raise ValueError(f"prior params must have shape (..., 3), got {tuple(params.shape)}")
    ys = prior_ys().to(device=params.device, dtype=params.dtype)
    start_y = params[..., 0:1]
    start_x = params[..., 1:2]
    theta = params[..., 2:3]
    dx = (1.0 - ys - start_y) * img_h / torch.tan(theta * math.pi + 1e-5)
    return (start_x * (img_w - 1) + dx) / (img_w - 1)
