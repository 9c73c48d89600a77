"""The Label Refinement Network (Islam, Rochan, Bruce, Wang, "Label Refinement Network for Coarse-to-Fine
Semantic Segmentation", arXiv 1703.00551): a label map predicted at the encoder's coarsest scale, then
refined stage by stage with the encoder's features of each finer scale, with a loss at every stage.

Why coarse to fine: the stride-32 features see the whole street, so the first map gets the layout right
(road below, sky above, buildings beside) but only in 32-pixel blocks; each later stage only has to fix
the labels near edges, where the finer encoder features say where the edge really runs. Because every
stage is supervised, every stage's map is a usable result, and a node short of time can stop early.

Our stages: the encoder is a ResNet-18 (optionally narrower) tapped at strides 32, 16, 8, 4 and 2; the
first map comes from the stride-32 features; each refinement stage upsamples the previous map to the next
scale, concatenates it with that scale's (projected) encoder features and predicts a correction that is
added to the upsampled map. The paper concatenates and convolves without the addition; the residual form
means a stage starts out as good as the map it refines, which speeds up training from scratch.

Beside the label maps, an embedding branch (a top-down FPN over the same pyramid, down to stride 2) gives
each pixel a vector for the discriminative loss, so that car and person instances come from the same
forward pass (models/discriminative).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from refine_perception.models.backbones.resnet import resnet18

STAGE_STRIDES = (32, 16, 8, 4, 2)  # the label maps, coarse to fine; the embedding is at the last one
SIZE_MULTIPLE = STAGE_STRIDES[0]


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class RefinementStage(nn.Module):
    """One decoder step: the previous (coarser) label map, upsampled to the skip features' scale, plus a
    correction computed from both."""

    def __init__(self, skip_channels: int, num_classes: int, channels: int) -> None:
        super().__init__()
        self.skip = conv_bn_relu(skip_channels, channels, 1)
        self.refine = nn.Sequential(conv_bn_relu(channels + num_classes, channels),
                                    nn.Conv2d(channels, num_classes, 3, padding=1))

    def forward(self, labels: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        coarse = upsample_to(labels, skip)
        return coarse + self.refine(torch.cat([self.skip(skip), coarse], dim=1))


class EmbeddingDecoder(nn.Module):
    """Top-down FPN: each scale's features (1x1-projected) plus the upsampled coarser sum, from stride 32
    down to stride 2, then a 3x3 block and a 1x1 to the embedding."""

    def __init__(self, pyramid_channels: Sequence[int], channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in pyramid_channels)
        self.head = nn.Sequential(conv_bn_relu(channels, channels), nn.Conv2d(channels, embedding_dim, 1))

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.laterals[-1](pyramid[-1])
        for lateral, features in zip(reversed(self.laterals[:-1]), reversed(pyramid[:-1])):
            x = lateral(features) + upsample_to(x, features)
        return self.head(x)


class LabelRefinementNet(nn.Module):
    """Outputs, as a tuple: the label logits of every stage, coarse to fine (N, C, H / s, W / s) for s in
    STAGE_STRIDES, then the embedding (N, D, H / 2, W / 2); of a `truncated` view, its stages and the
    embedding only if it keeps it.

    Besides the weights the model carries what its file must record: the class names and the Cityscapes
    label id of each class (how ground truth maps onto the outputs), which classes have instances, the
    input size, and the discriminative loss's margins (the clustering's distances)."""

    def __init__(
        self,
        class_names: Sequence[str],
        label_ids: Sequence[int],
        instance_classes: Sequence[str] = (),
        *,
        width: float = 1.0,
        decoder_channels: int = 64,
        embedding_dim: int = 8,
        embedding_channels: int = 32,
        input_size: tuple[int, int] = (256, 512),
        delta_var: float = 0.5,
        delta_dist: float = 1.5,
    ) -> None:
        super().__init__()
        names, ids = tuple(class_names), tuple(int(i) for i in label_ids)
        if len(names) < 2 or len(set(names)) != len(names) or len(ids) != len(names) or len(set(ids)) != len(ids):
            raise ValueError(f"need at least two distinct class names with one distinct label id each, got "
                             f"{names} and {ids}")
        if not set(instance_classes) <= set(names):
            raise ValueError(f"instance classes {tuple(instance_classes)} are not all among {names}")
        height, width_px = (int(v) for v in input_size)
        if min(height, width_px) < SIZE_MULTIPLE or height % SIZE_MULTIPLE or width_px % SIZE_MULTIPLE:
            raise ValueError(f"input_size (height, width) must be positive multiples of {SIZE_MULTIPLE}, got {input_size}")
        if decoder_channels < 1 or embedding_dim < 1 or embedding_channels < 1:
            raise ValueError("decoder_channels, embedding_dim and embedding_channels must be >= 1")
        if not 0 <= delta_var < delta_dist:
            raise ValueError(f"need 0 <= delta_var < delta_dist, got {delta_var} and {delta_dist}")
        self.class_names, self.label_ids = names, ids
        self.instance_classes = tuple(name for name in names if name in set(instance_classes))
        self.width, self.decoder_channels = float(width), int(decoder_channels)
        self.embedding_dim, self.embedding_channels = int(embedding_dim), int(embedding_channels)
        self.input_size = (height, width_px)
        self.delta_var, self.delta_dist = float(delta_var), float(delta_dist)
        num_classes = len(names)
        self.encoder = resnet18(width)
        pyramid = self.encoder.pyramid_channels  # strides 2, 4, 8, 16, 32
        self.coarse = nn.Sequential(conv_bn_relu(pyramid[-1], decoder_channels), nn.Conv2d(decoder_channels,
                                                                                           num_classes, 1))
        # a stage works at most with as many channels as its skip features have: the finest stages run on
        # 4x and 16x the pixels of the stride-8 one, and would otherwise cost more than the whole encoder
        self.stages = nn.ModuleList(RefinementStage(c, num_classes, min(decoder_channels, c))
                                    for c in reversed(pyramid[:-1]))
        self.embedding = EmbeddingDecoder(pyramid, embedding_channels, embedding_dim)
        self.active_stages = len(STAGE_STRIDES)  # what forward computes (see `truncated`)
        self.with_embedding = True

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def truncated(self, stages: int, embedding: bool) -> LabelRefinementNet:
        """The same network (shared weights) computing only its first `stages` label maps, and the
        embedding only with `embedding`: what a node stopping early runs, at the cost of the stages kept."""
        if not 1 <= stages <= len(STAGE_STRIDES):
            raise ValueError(f"stages must be 1..{len(STAGE_STRIDES)}, got {stages}")
        view = copy.copy(self)  # a new object over the same submodules and parameters
        view.active_stages, view.with_embedding = int(stages), bool(embedding)
        return view

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % SIZE_MULTIPLE or images.shape[3] % SIZE_MULTIPLE:
            raise ValueError(f"expected images (N, 3, H, W) with H and W multiples of {SIZE_MULTIPLE}, got "
                             f"{tuple(images.shape)}")
        pyramid = self.encoder.pyramid(images)
        maps = [self.coarse(pyramid[-1])]
        for stage, skip in zip(self.stages[: self.active_stages - 1], reversed(pyramid[:-1])):
            maps.append(stage(maps[-1], skip))
        return (*maps, self.embedding(pyramid)) if self.with_embedding else tuple(maps)
