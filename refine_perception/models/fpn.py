"""Feature pyramid neck in the mmdet form CLRNet uses (no norm, no activation, nearest top-down)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _ConvLayer(nn.Module):
    """A biased conv wrapped under ``.conv`` so parameter names match mmcv's ConvModule in CLRNet checkpoints."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FPN(nn.Module):
    """Lateral 1x1 convs, nearest-upsample-and-add from the coarsest level down, then a 3x3 conv per level.

    Inputs and outputs are ordered fine to coarse (stride 8, 16, 32 for CLRNet); the CLRNet head
    reverses the outputs so that its first refinement stage sees the coarsest map.
    """

    def __init__(self, in_channels: Sequence[int] = (128, 256, 512), out_channels: int = 64) -> None:
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.out_channels = out_channels
        self.lateral_convs = nn.ModuleList(_ConvLayer(c, out_channels, 1) for c in self.in_channels)
        self.fpn_convs = nn.ModuleList(_ConvLayer(out_channels, out_channels, 3) for _ in self.in_channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(features) != len(self.lateral_convs):
            raise ValueError(f"FPN expects {len(self.lateral_convs)} feature maps, got {len(features)}")
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features)]
        for i in range(len(laterals) - 1, 0, -1):
            finer = laterals[i - 1]
            laterals[i - 1] = finer + F.interpolate(laterals[i], size=finer.shape[2:], mode="nearest")
        return tuple(conv(lat) for conv, lat in zip(self.fpn_convs, laterals))
