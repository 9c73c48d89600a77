"""LRN's deep supervision: a cross-entropy at every stage against the ground truth brought down to that
stage's size.

Why nearest-neighbour downsampling of the labels (as the paper does), not pooled soft targets: every
stage is meant to be usable on its own as a hard label map, so each is trained on hard labels of its own
resolution. A pixel of a coarse stage takes the label at the matching position of the full map; the
ignore label (void) stays ignored at every scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from refine_perception.segmentation.classes import IGNORE_LABEL


def labels_at(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, H, W) int64 labels resized to `size` (h, w) by nearest neighbour (the value at each output
    pixel's centre, so a 2^k reduction samples the same positions at every scale)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    height, width = labels.shape[-2:]
    rows = ((torch.arange(size[0], device=labels.device) + 0.5) * (height / size[0])).long().clamp(max=height - 1)
    cols = ((torch.arange(size[1], device=labels.device) + 0.5) * (width / size[1])).long().clamp(max=width - 1)
    return labels[:, rows][:, :, cols]


class StageCrossEntropy(nn.Module):
    """sum_k weight_k * CE(stage_k logits, labels at stage k's size), ignoring IGNORE_LABEL. Returns the
    total and each stage's (unweighted, detached) cross-entropy, named by the stage's stride."""

    def __init__(self, weights: Sequence[float], strides: Sequence[int]) -> None:
        super().__init__()
        if len(weights) != len(strides) or any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"need one weight >= 0 per stage ({len(strides)}), not all zero, got {tuple(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.strides = tuple(int(s) for s in strides)

    def forward(self, stages: Sequence[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if len(stages) != len(self.weights):
            raise ValueError(f"expected {len(self.weights)} stage outputs, got {len(stages)}")
        total = stages[0].new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        for logits, weight, stride in zip(stages, self.weights, self.strides):
            target = labels_at(labels, logits.shape[-2:])
            if bool((target != IGNORE_LABEL).any()):
                loss = F.cross_entropy(logits, target, ignore_index=IGNORE_LABEL)
            else:  # an all-void batch: no gradient, not NaN
                loss = logits.sum() * 0.0
            total = total + weight * loss
            parts[f"ce_s{stride}"] = loss.detach()
        return total, parts
