"""Raw network output to the quantities the loss and the clustering reason about, in one place so that
training and inference can never disagree on the coordinate scale or the channel layout.

A pixel's spatial embedding is its own position plus a learnt offset, both in embedding units of
`pixels_per_unit` input pixels; tanh bounds the offset to one unit, so a pixel can only vote for a
centre within reach. Sigma stays raw here: the loss averages it over an instance before the
exponential (the paper's kernel scale is exp(10 * sigma)), the clustering takes it at the seed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

SIGMA_SCALE = 10.0  # kernel scale s = exp(SIGMA_SCALE * sigma) per squared unit, as in the paper


class Embeddings(NamedTuple):
    """Per pixel: position (N, 2, H, W) as (x, y) in units, raw sigma (N, n_sigma, H, W) and seed
    probability (N, num_classes, H, W)."""

    position: torch.Tensor
    sigma: torch.Tensor
    seed: torch.Tensor


def pixel_coordinates(height: int, width: int, pixels_per_unit: float, like: torch.Tensor) -> torch.Tensor:
    """(2, H, W): column and row of every pixel in embedding units, on `like`'s device and dtype."""
    ys = torch.arange(height, device=like.device, dtype=like.dtype) / pixels_per_unit
    xs = torch.arange(width, device=like.device, dtype=like.dtype) / pixels_per_unit
    return torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)])


def split_output(raw: torch.Tensor, n_sigma: int, pixels_per_unit: float) -> Embeddings:
    """The embeddings of a raw (N, 2 + n_sigma + num_classes, H, W) output."""
    if raw.ndim != 4 or raw.shape[1] < 3 + n_sigma:
        raise ValueError(f"expected a raw output (N, 2 + {n_sigma} + classes, H, W), got {tuple(raw.shape)}")
    position = torch.tanh(raw[:, :2]) + pixel_coordinates(raw.shape[2], raw.shape[3], pixels_per_unit, raw)
    return Embeddings(position, raw[:, 2:2 + n_sigma], torch.sigmoid(raw[:, 2 + n_sigma:]))


def kernel_scale(sigma: torch.Tensor) -> torch.Tensor:
    """The Gaussian's inverse squared bandwidth 1 / (2 sigma_paper^2) per axis from raw sigma."""
    return torch.exp(SIGMA_SCALE * sigma)


def kernel_distance(position: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log phi = sum_d scale_d (position_d - centre_d)^2 over dim 0, for `position` (2, ...), `centre`
    (2, ...) and `scale` (n_sigma, ...) broadcast against each other (one sigma serves both axes).
    Thresholds on phi are cheaper as thresholds on this, without the exponential."""
    return ((position - centre) ** 2 * scale).sum(dim=0)
