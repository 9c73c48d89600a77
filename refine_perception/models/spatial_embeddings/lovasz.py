"""The binary Lovász hinge (Berman et al., CVPR 2018): a convex surrogate of 1 - IoU that, unlike
per-pixel losses, weighs every pixel by how much it changes the IoU of the whole mask, so small and
large instances count alike. SpatialEmbeddings trains its Gaussian margins with it.
"""

from __future__ import annotations

import torch


def jaccard_steps(labels_by_error: torch.Tensor) -> torch.Tensor:
    """How much the Jaccard loss 1 - |gt & pred| / |gt | pred| grows as each pixel, in the given order
    (largest hinge error first), is counted wrong: the gradient of its Lovász extension."""
    labels = labels_by_error.float()
    positives = labels.sum()
    intersection = positives - labels.cumsum(0)
    union = positives + (1.0 - labels).cumsum(0)
    loss = 1.0 - intersection / union
    return torch.diff(loss, prepend=loss.new_zeros(1))


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász hinge of flat logits (positive means foreground) against flat 0/1 or bool labels."""
    if logits.shape != labels.shape or logits.ndim != 1:
        raise ValueError(f"expected flat logits and labels of one shape, got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    if logits.numel() == 0:
        return logits.sum()
    signs = 2.0 * labels.float() - 1.0
    errors = 1.0 - logits * signs
    errors, order = torch.sort(errors, descending=True)
    return torch.dot(torch.relu(errors), jaccard_steps(labels[order]))
