"""The CLRNet network: backbone, FPN neck and the refinement head, on a BGR image in [0, 1].

The official pre-processing (`preprocess.py`) keeps OpenCV's BGR order and only divides by 255 (no
mean/std); feeding 0..255 pixels gives empty outputs, so the expected range is part of the contract.

The input is 320x800 as in the paper, or smaller for cheaper models (`input_size`). Lanes are always
expressed in the 800x320 label space the priors, the loss and the decoding are defined in: outputs are
normalised coordinates, so a 160x400 model predicts the same quantities from a coarser image.
`num_priors` (192) and `sample_points` (36 per prior) are the paper's; the head's cost grows with
their product, so CPU-sized models may use fewer. `pooling` picks where the later refinement stages
read their features (see `head.py`): "line" as the paper, "lane" along the previous stage's lane. In
eval mode the forward has no data-dependent control flow, so `torch.onnx.export` traces it into one
graph with a free batch axis; decoding and lane NMS stay outside the graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from refine_perception.models.backbones import build_backbone
from refine_perception.models.clrnet.head import CLRHead, Pooling
from refine_perception.models.clrnet.priors import IMG_H, IMG_W, NUM_PRIORS, SAMPLE_POINTS
from refine_perception.models.fpn import FPN

FPN_CHANNELS = 64


class CLRNetOutput(NamedTuple):
    """Inference outputs: the last stage's lanes (B, 192, 78) in the official layout
    [logit_bg, logit_lane, start_y, start_x, theta, length, 72 xs] and their type (B, 192, 5) and
    colour (B, 192, 3) logits."""

    lanes: torch.Tensor
    types: torch.Tensor
    colors: torch.Tensor


class CLRNetTrainOutput(NamedTuple):
    """Training outputs: every refinement stage's lanes (each B, 192, 78), the auxiliary segmentation
    logits (B, classes, 320, 800) and the last stage's type and colour logits."""

    stages: tuple[torch.Tensor, ...]
    seg: torch.Tensor
    types: torch.Tensor
    colors: torch.Tensor


class CLRNet(nn.Module):
    """Lane detector returning `CLRNetTrainOutput` in training mode and `CLRNetOutput` in eval mode."""

    def __init__(
        self,
        backbone: str = "resnet18",
        num_seg_classes: int = 5,
        input_size: tuple[int, int] = (IMG_H, IMG_W),
        num_priors: int = NUM_PRIORS,
        sample_points: int = SAMPLE_POINTS,
        pooling: Pooling = "line",
    ) -> None:
        super().__init__()
        height, width = input_size
        self.backbone = build_backbone(backbone)
        multiple = self.backbone.size_multiple
        if height < 64 or width < 64 or height % 32 or width % multiple:
            raise ValueError(f"input_size (height, width) must be at least 64, the height a multiple of 32 and "
                             f"the width a multiple of {multiple} for {backbone}, got {input_size}")
        self.input_size = (int(height), int(width))
        self.neck = FPN(self.backbone.out_channels, FPN_CHANNELS)
        self.head = CLRHead(FPN_CHANNELS, num_seg_classes, num_priors, sample_points, pooling)

    def forward(self, images: torch.Tensor) -> CLRNetOutput | CLRNetTrainOutput:
        # eager callers only: under ONNX tracing the shapes are fixed by the example input, and inside a
        # CUDA graph capture reading the NaN check back to the host is not allowed
        if not torch.jit.is_tracing() and not (images.is_cuda and torch.cuda.is_current_stream_capturing()):
            _check_images(images, self.input_size)
        features = self.neck(self.backbone(images))
        stages, types, colors = self.head(features)
        if self.training:
            seg = self.head.segment(features, (images.shape[-2], images.shape[-1]))
            return CLRNetTrainOutput(tuple(stages), seg, types, colors)
        return CLRNetOutput(stages[-1], types, colors)


def _check_images(images: torch.Tensor, size: tuple[int, int]) -> None:
    if not torch.is_floating_point(images):
        raise TypeError(f"CLRNet expects float images in [0, 1], got dtype {images.dtype}")
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, *size):
        raise ValueError(f"CLRNet expects images of shape (B, 3, {size[0]}, {size[1]}), got {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("CLRNet input images contain NaN or infinite values")
