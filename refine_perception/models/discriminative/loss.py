"""The discriminative loss (De Brabandere, Neven, Van Gool, "Semantic Instance Segmentation with a
Discriminative Loss Function", CVPRW 2017).

Why this loss: it only asks that the pixels of one instance embed close together and that different
instances lie far apart. It needs no boxes and no centre points, so two crossed sticks whose boxes
overlap almost entirely are no harder than two disjoint ones. Take one class in one image. It has C
instances; instance c has N_c pixels with embeddings x_i and mean embedding mu_c. The terms are
    L_var  = 1/C sum_c 1/N_c sum_{i in c} [||mu_c - x_i|| - delta_v]_+^2      (pull pixels to within delta_v)
    L_dist = 1/(C (C-1)) sum_{cA != cB} [2 delta_d - ||mu_cA - mu_cB||]_+^2   (push centres 2 delta_d apart)
    L_reg  = 1/C sum_c ||mu_c||                                                (keep the centres bounded)
    L = alpha L_var + beta L_dist + gamma L_reg
The paper's defaults are delta_v = 0.5, delta_d = 1.5, alpha = beta = 1, gamma = 0.001 and the L2 norm.
At the optimum every pixel lies within delta_v of its centre and the centres are 2 delta_d apart, so
pixels of different instances are at least 2 (delta_d - delta_v) apart. The clustering relies on this.

The loss is applied per semantic class, so instances of different classes are never pushed apart and
all classes share one embedding space. An instance is a (class, id) pair. Instance ids may therefore
repeat across classes (one instance map per class) or be unique over the image. A class with C = 1
has L_dist = 0. One image's terms are the mean over the classes that have an instance there. The batch
loss is the mean over the images, and an image without instances adds 0 (finite, zero gradient).

The whole batch is computed at once, with no loop. One `torch.unique` groups the pixels into instances.
The means and per-instance sums are `index_add`s over the instance index. The pairs are the instance
pairs of the same image and class. So the cost is one pass over the foreground pixels and one over the
pairs of instances.

`DiscriminativeNetLoss` is what training a DiscriminativeNet minimises: this loss on its embedding plus the
cross-entropy of its semantic head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from refine_perception.models.discriminative.output import split_output


@dataclass(frozen=True)
class DiscriminativeSettings:
    """The paper's margins, weights and norm. `delta_dist` is half the distance between centres that
    the distance term asks for. `norm` is 2 (the paper's default, Euclidean) or 1."""

    delta_var: float = 0.5
    delta_dist: float = 1.5
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 0.001
    norm: int = 2

    def __post_init__(self) -> None:
        if self.delta_var < 0 or self.delta_dist <= 0:
            raise ValueError(f"need delta_var >= 0 and delta_dist > 0, got {self.delta_var} and {self.delta_dist}")
        if min(self.alpha, self.beta, self.gamma) < 0:
            raise ValueError(f"weights must be >= 0, got {self.alpha}, {self.beta}, {self.gamma}")
        if self.norm not in (1, 2):
            raise ValueError(f"norm must be 1 or 2, got {self.norm}")


class DiscriminativeLoss(nn.Module):
    """The loss of embeddings (N, D, H, W) against instance ids (N, H, W) int64 (0 background; ids need
    not be consecutive). `classes` (N, H, W) int64 gives the class of every instance pixel. Without it,
    every instance is of one class. Returns the weighted total and the unweighted batch means of the
    three terms, detached."""

    def __init__(self, settings: DiscriminativeSettings = DiscriminativeSettings()) -> None:
        super().__init__()
        self.settings = settings

    def forward(
        self, embeddings: torch.Tensor, instances: torch.Tensor, classes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if embeddings.ndim != 4 or instances.shape != (embeddings.shape[0], *embeddings.shape[2:]):
            raise ValueError(f"expected embeddings (N, D, H, W) and instances (N, H, W), got "
                             f"{tuple(embeddings.shape)} and {tuple(instances.shape)}")
        if instances.dtype != torch.int64 or bool((instances < 0).any()):
            raise ValueError(f"instances must be int64 ids >= 0 (0 background), got {instances.dtype}")
        if classes is not None and (classes.shape != instances.shape or classes.dtype != torch.int64
                                    or bool((classes < 0).any())):
            raise ValueError(f"classes must be int64 >= 0 of shape {tuple(instances.shape)}, got {classes.dtype} "
                             f"{tuple(classes.shape)}")
        settings = self.settings
        batch, pixels_per_image = embeddings.shape[0], embeddings.shape[2] * embeddings.shape[3]

        ids = instances.flatten()
        foreground = torch.nonzero(ids).squeeze(1)
        image, pixel = foreground // pixels_per_image, foreground % pixels_per_image
        # bfloat16/float16 (autocast) would lose the sums over thousands of pixels
        points = embeddings.flatten(2)[image, :, pixel]  # (P, D)
        points = points.to(torch.promote_types(points.dtype, torch.float32))
        semantic = torch.zeros_like(foreground) if classes is None else classes.flatten()[foreground]
        # instance = (image, class, id); group = (image, class), the set the terms average over
        instance_keys, instance = torch.unique(torch.stack([image, semantic, ids[foreground]], dim=1), dim=0,
                                               return_inverse=True)
        group_keys, group = torch.unique(instance_keys[:, :2], dim=0, return_inverse=True)
        num_instances, num_groups = instance_keys.shape[0], group_keys.shape[0]

        pixel_counts = torch.bincount(instance, minlength=num_instances).to(points.dtype)
        centres = points.new_zeros(num_instances, points.shape[1]).index_add(0, instance, points)
        centres = centres / pixel_counts[:, None]
        pull = torch.clamp(self._norm(centres[instance] - points) - settings.delta_var, min=0.0) ** 2
        instance_variance = points.new_zeros(num_instances).index_add(0, instance, pull) / pixel_counts

        first, second = torch.nonzero(torch.triu(group[:, None] == group[None, :], diagonal=1)).unbind(1)
        push = torch.clamp(2.0 * settings.delta_dist - self._norm(centres[first] - centres[second]), min=0.0) ** 2

        instance_counts = torch.bincount(group, minlength=num_groups).to(points.dtype)
        variance = points.new_zeros(num_groups).index_add(0, group, instance_variance) / instance_counts
        # each unordered pair stands for the two ordered pairs of the paper's sum
        ordered_pairs = (instance_counts * (instance_counts - 1)).clamp(min=1.0)
        distance = 2.0 * points.new_zeros(num_groups).index_add(0, group[first], push) / ordered_pairs
        regularisation = points.new_zeros(num_groups).index_add(0, group, self._norm(centres)) / instance_counts

        group_image = group_keys[:, 0]
        classes_per_image = torch.bincount(group_image, minlength=batch).clamp(min=1).to(points.dtype)

        def batch_mean(per_group: torch.Tensor) -> torch.Tensor:
            return (points.new_zeros(batch).index_add(0, group_image, per_group) / classes_per_image).mean()

        terms = {"variance": batch_mean(variance), "distance": batch_mean(distance),
                 "regularisation": batch_mean(regularisation)}
        total = (settings.alpha * terms["variance"] + settings.beta * terms["distance"]
                 + settings.gamma * terms["regularisation"])
        return total, {name: value.detach() for name, value in terms.items()}

    def _norm(self, vectors: torch.Tensor) -> torch.Tensor:
        """The norm of each row (torch's gradient at a zero vector is 0, not NaN)."""
        return torch.linalg.vector_norm(vectors, ord=self.settings.norm, dim=-1)


class DiscriminativeNetLoss(nn.Module):
    """The training loss of a DiscriminativeNet's raw output: the discriminative loss on its embedding,
    per class, plus `semantic_weight` times the cross-entropy of its semantic logits (the foreground head).
    Targets as for DiscriminativeLoss; class k of `classes` is logit k + 1 (0 is background). The
    clustering only sees the pixels the semantic head calls foreground, so both heads are needed."""

    def __init__(self, embedding_dim: int, settings: DiscriminativeSettings = DiscriminativeSettings(),
                 semantic_weight: float = 1.0) -> None:
        super().__init__()
        if semantic_weight < 0:
            raise ValueError(f"semantic_weight must be >= 0, got {semantic_weight}")
        self.embedding_dim = embedding_dim
        self.discriminative = DiscriminativeLoss(settings)
        self.semantic_weight = semantic_weight

    def forward(
        self, raw: torch.Tensor, instances: torch.Tensor, classes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embedding, logits = split_output(raw, self.embedding_dim)
        total, parts = self.discriminative(embedding, instances, classes)
        semantic_class = torch.ones_like(instances) if classes is None else classes + 1
        semantic = F.cross_entropy(logits, torch.where(instances > 0, semantic_class, 0))
        return total + self.semantic_weight * semantic, {**parts, "semantic": semantic.detach()}
