"""What training a LabelRefinementNet minimises: the stage cross-entropies plus the discriminative loss of
its embedding over the instances of its instance classes (cars and persons are never pushed apart from
each other, since the discriminative loss works class by class)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from refine_perception.models.discriminative.loss import DiscriminativeLoss, DiscriminativeSettings
from refine_perception.models.lrn.stage_loss import StageCrossEntropy, labels_at


class LabelRefinementLoss(nn.Module):
    """Targets: `labels` (N, H, W) int64 class indices (IGNORE_LABEL for void) and `instances` (N, H, W)
    int64 ids (0 for no instance; unique within an image) at the network's input size."""

    def __init__(self, stage_weights: Sequence[float], strides: Sequence[int],
                 settings: DiscriminativeSettings, embedding_weight: float = 1.0) -> None:
        super().__init__()
        if embedding_weight < 0:
            raise ValueError(f"embedding_weight must be >= 0, got {embedding_weight}")
        self.stages = StageCrossEntropy(stage_weights, strides)
        self.discriminative = DiscriminativeLoss(settings)
        self.embedding_weight = float(embedding_weight)

    def forward(self, outputs: Sequence[torch.Tensor], labels: torch.Tensor,
                instances: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        *stages, embedding = outputs
        total, parts = self.stages(stages, labels)
        if self.embedding_weight > 0:
            size = embedding.shape[-2:]
            ids, classes = labels_at(instances, size), labels_at(labels, size)
            embedding_loss, terms = self.discriminative(embedding, ids, classes)
            total = total + self.embedding_weight * embedding_loss
            parts |= terms
        return total, parts
