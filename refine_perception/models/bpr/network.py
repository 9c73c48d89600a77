"""BPR's patch network, ours: a small U-Net on (image patch, mask patch) predicting the mask inside the patch.

The paper uses HRNet (18-small or 48) pretrained on ImageNet; with no pretrained weights and a CPU budget we
take a U-Net of three scales, which keeps full-resolution features for the edge it has to place and is
cheap on 64-128 px patches. The mask (in {-1, +1}) is simply a fourth input channel: the paper adds a
separate convolution of the mask to the image's first convolution, which is the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )


class BoundaryRefiner(nn.Module):
    """(K, 4, S, S) patches (image channels, then the mask in {-1, +1}) to (K, 1, S, S) foreground logits;
    S a multiple of 2^(len(channels) - 1). The model records the patch side it was trained on (image pixels
    per patch) and S (`input_size`, what the patches are resized to)."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64), patch_size: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"need at least two scales of >= 1 channel, got {tuple(channels)}")
        multiple = 2 ** (len(channels) - 1)
        if patch_size < 1 or input_size < multiple or input_size % multiple:
            raise ValueError(f"need patch_size >= 1 and input_size a positive multiple of {multiple}, got "
                             f"{patch_size} and {input_size}")
        self.channels = tuple(int(c) for c in channels)
        self.patch_size = int(patch_size)
        self.input_size = (int(input_size), int(input_size))
        self.down = nn.ModuleList(_block(c_in, c_out) for c_in, c_out in zip((4, *self.channels[:-1]), self.channels))
        self.up = nn.ModuleList(_block(c_deep + c_skip, c_skip)
                                for c_deep, c_skip in zip(self.channels[:0:-1], self.channels[-2::-1]))
        self.head = nn.Conv2d(self.channels[0], 1, 1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        multiple = 2 ** (len(self.channels) - 1)
        if patches.ndim != 4 or patches.shape[1] != 4 or patches.shape[2] % multiple or patches.shape[3] % multiple:
            raise ValueError(f"expected patches (K, 4, S, S) with S a multiple of {multiple}, got {tuple(patches.shape)}")
        skips = []
        x = patches
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return self.head(x)
