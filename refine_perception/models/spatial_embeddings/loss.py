"""The SpatialEmbeddings training loss (Neven et al., CVPR 2019).

Per image with instances k = 1..K, each with centre C_k (the mean coordinate of its pixels) and kernel
scale s_k = exp(10 * mean sigma over its pixels), phi_k(e) = exp(-sum_d s_k,d (e_d - C_k,d)^2) is a
soft mask in embedding space. The loss is
    w_inst * mean_k LovaszHinge(2 phi_k - 1, mask_k)            (pixels vote inside their own margin)
  + w_var  * mean_k mean_{i in k} (sigma_i - mean sigma_k)^2    (one bandwidth per instance)
  + w_seed * sum_i weight_i (seed_i - target_i)^2 / (H W)       (seed = how well a pixel would cluster)
  + w_offset * mean_k mean_{i in k} |e_i - C_k|_1              (not in the paper: see below)
where the seed target is the detached phi_k(e_i) on instance pixels (weight `foreground_weight`) and 0
elsewhere.

The offset term is ours. The Lovász term only moves pixels whose phi is not already ~0, i.e. those
within the initial kernel (a few pixels) of their centre; long thin objects such as sticks, whose
pixels lie up to half their length away, then learn very slowly (on 4 stick images the instance term
fell from 1.95 to 1.23 in 160 steps). Pulling every pixel towards its centre has the same optimum (the
paper's centre is the centroid) and a gradient everywhere from the first step; `w_offset` = 0 is the
paper's loss. With several classes there is one seed channel per class, trained one-vs-all; offsets and
sigma are shared, so the instance and sigma terms run over all instances.

The Lovász term is the cost: one sort per instance. Sorting all H*W pixels is unnecessary. A negative
pixel's hinge error is 2 phi_k and a positive's 2 (1 - phi_k); once every positive is counted wrong the
Jaccard loss is already 1, so negatives whose error is below the smallest positive error get a zero
weight, and dropping them changes neither the value nor the gradient. Negatives whose error is below
`lovasz_tolerance` are dropped too: the Lovász extension's weights are non-negative and sum to at most
1, so this lowers each instance's term by at most the tolerance (1e-3, against terms of 0.05-1). What
remains is the instance and the pixels that embed near its centre, usually a few times its size; the
full-image kernel to find them is computed without autograd.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from refine_perception.models.spatial_embeddings.embedding import (
    kernel_distance,
    kernel_scale,
    pixel_coordinates,
    split_output,
)
from refine_perception.models.spatial_embeddings.erfnet import DEFAULT_PIXELS_PER_UNIT, SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.lovasz import lovasz_hinge


class SpatialEmbeddingLoss(nn.Module):
    """Loss of a raw output against instance ids (N, H, W) int64 (0 background, ids need not be
    consecutive) and, with several classes, the class (0..C-1) of every instance pixel (N, H, W).
    Returns the weighted total (mean over the batch) and the unweighted parts, detached."""

    def __init__(
        self,
        n_sigma: int = 2,
        pixels_per_unit: float = DEFAULT_PIXELS_PER_UNIT,
        w_inst: float = 1.0,
        w_var: float = 10.0,
        w_seed: float = 1.0,
        foreground_weight: float = 10.0,
        w_offset: float = 0.0,
        lovasz_tolerance: float = 1e-3,
    ) -> None:
        super().__init__()
        if n_sigma not in (1, 2):
            raise ValueError(f"n_sigma must be 1 or 2, got {n_sigma}")
        self.n_sigma = n_sigma
        self.pixels_per_unit = pixels_per_unit
        self.w_inst, self.w_var, self.w_seed = w_inst, w_var, w_seed
        self.foreground_weight = foreground_weight
        self.w_offset = w_offset
        self.lovasz_tolerance = lovasz_tolerance

    @classmethod
    def for_model(cls, model: SpatialEmbeddingNet, **weights: float) -> SpatialEmbeddingLoss:
        """The loss with the model's sigma count and coordinate scale."""
        return cls(model.n_sigma, model.pixels_per_unit, **weights)

    def forward(
        self, raw: torch.Tensor, instances: torch.Tensor, classes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        num_classes = raw.shape[1] - 2 - self.n_sigma if raw.ndim == 4 else 0
        if num_classes < 1 or instances.shape != (raw.shape[0], *raw.shape[2:]):
            raise ValueError(f"expected raw output (N, {2 + self.n_sigma} + classes, H, W) and instances (N, H, W), "
                             f"got {tuple(raw.shape)} and {tuple(instances.shape)}")
        if instances.dtype != torch.int64 or bool((instances < 0).any()):
            raise ValueError(f"instances must be int64 ids >= 0 (0 background), got {instances.dtype}")
        if classes is None and num_classes > 1:
            raise ValueError(f"{num_classes} seed channels need a class map")
        if classes is not None and (classes.shape != instances.shape or classes.dtype != torch.int64):
            raise ValueError(f"classes must be int64 of shape {tuple(instances.shape)}, got {classes.dtype} "
                             f"{tuple(classes.shape)}")
        embeddings = split_output(raw, self.n_sigma, self.pixels_per_unit)
        coordinates = pixel_coordinates(raw.shape[2], raw.shape[3], self.pixels_per_unit, raw).flatten(1)
        parts = [
            self._image_loss(embeddings.position[b].flatten(1), embeddings.sigma[b].flatten(1),
                             embeddings.seed[b].flatten(1), instances[b].flatten(),
                             None if classes is None else classes[b].flatten(), coordinates)
            for b in range(raw.shape[0])
        ]
        instance, variance, seed, offset = (torch.stack(values).mean() for values in zip(*parts))
        total = self.w_inst * instance + self.w_var * variance + self.w_seed * seed + self.w_offset * offset
        return total, {"instance": instance.detach(), "variance": variance.detach(), "seed": seed.detach(),
                       "offset": offset.detach()}

    def _image_loss(
        self,
        position: torch.Tensor,
        sigma: torch.Tensor,
        seed: torch.Tensor,
        ids: torch.Tensor,
        classes: torch.Tensor | None,
        coordinates: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Instance, sigma, seed and offset terms of one image, tensors flattened over its P pixels."""
        seed_term = (seed**2).sum()  # every pixel starts as background of every class
        instance_terms, variance_terms, offset_terms = [], [], []
        foreground = torch.nonzero(ids).squeeze(1)
        sorted_ids, order = torch.sort(ids[foreground])
        counts = torch.unique_consecutive(sorted_ids, return_counts=True)[1]
        for pixels in torch.split(foreground[order], counts.tolist()):
            instance_sigma = sigma[:, pixels]
            mean_sigma = instance_sigma.mean(dim=1, keepdim=True)
            variance_terms.append(((instance_sigma - mean_sigma.detach()) ** 2).mean())
            centre = coordinates[:, pixels].mean(dim=1, keepdim=True)
            offset_terms.append((position[:, pixels] - centre).abs().sum(dim=0).mean())
            scale = kernel_scale(mean_sigma)
            negatives = self._lovasz_negatives(position, centre, scale.detach(), ids, pixels)
            phi = torch.exp(-kernel_distance(position[:, torch.cat([pixels, negatives])], centre, scale))
            labels = torch.arange(phi.shape[0], device=phi.device) < pixels.shape[0]
            instance_terms.append(lovasz_hinge(2.0 * phi - 1.0, labels))
            own_seed = seed[self._instance_class(classes, pixels, seed.shape[0]), pixels]
            target = phi[:pixels.shape[0]].detach()
            seed_term = seed_term + self.foreground_weight * ((own_seed - target) ** 2).sum() - (own_seed**2).sum()
        seed_term = seed_term / seed.shape[1]
        if not instance_terms:
            zero = seed_term.new_zeros(())
            return zero, zero, seed_term, zero
        return (torch.stack(instance_terms).mean(), torch.stack(variance_terms).mean(), seed_term,
                torch.stack(offset_terms).mean())

    @torch.no_grad()
    def _lovasz_negatives(self, position: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor,
                          ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """The pixels outside an instance whose hinge error 2 phi can weigh in its Lovász term: at
        least the smallest error of its own pixels, 2 (1 - max phi), and at least the tolerance."""
        distance = kernel_distance(position, centre, scale)
        smallest_positive_error = 2.0 * (1.0 - math.exp(-float(distance[pixels].min())))
        threshold = max(smallest_positive_error, self.lovasz_tolerance)  # on 2 phi, at most 2
        limit = -math.log(threshold / 2.0) if threshold > 0 else math.inf  # the same on -log phi
        near = torch.nonzero(distance <= limit).squeeze(1)
        return near[ids[near] != ids[pixels[0]]]

    @staticmethod
    def _instance_class(classes: torch.Tensor | None, pixels: torch.Tensor, num_classes: int) -> int:
        if classes is None:
            return 0
        values = classes[pixels]
        first = int(values[0])
        if not 0 <= first < num_classes or bool((values != first).any()):
            raise ValueError(f"every pixel of an instance needs the same class in 0..{num_classes - 1}, "
                             f"got {sorted(set(values.tolist()))[:5]}")
        return first
