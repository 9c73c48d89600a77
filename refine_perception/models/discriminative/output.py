"""The channel layout of a DiscriminativeNet's raw output, in one place so that the loss and the predictor
can never disagree on it: the embedding first, then the semantic logits with background first."""

from __future__ import annotations

from typing import NamedTuple

import torch


class DiscriminativeOutput(NamedTuple):
    """Per pixel: the embedding (N, D, H, W) and the semantic logits (N, num_classes + 1, H, W)."""

    embedding: torch.Tensor
    logits: torch.Tensor


def split_output(raw: torch.Tensor, embedding_dim: int) -> DiscriminativeOutput:
    """The parts of a raw (N, embedding_dim + num_classes + 1, H, W) output."""
    if raw.ndim != 4 or raw.shape[1] < embedding_dim + 2:
        raise ValueError(f"expected a raw output (N, {embedding_dim} + classes + 1, H, W), got {tuple(raw.shape)}")
    return DiscriminativeOutput(raw[:, :embedding_dim], raw[:, embedding_dim:])
