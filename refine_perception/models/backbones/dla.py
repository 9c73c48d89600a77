"""DLA-34 (Deep Layer Aggregation, Yu et al. 2018) as CLRNet uses it, with the official checkpoint's names.

One deliberate difference from the reference implementation: a tree with more than one level there
owns a 1x1 projection that its forward pass never uses. Like timm, this version does not create it;
the official checkpoint's copies of those weights are listed in ``ignored_checkpoint_prefixes``.
"""

from __future__ import annotations

import torch
from torch import nn

from refine_perception.models.backbones.resnet import FEATURE_STRIDES, BasicBlock, init_conv_bn

LEVELS: tuple[int, ...] = (1, 1, 1, 2, 2, 1)
CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256, 512)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Root(nn.Module):
    """Aggregation node: fuses the concatenated children with a 1x1 conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.relu(self.bn(self.conv(torch.cat(inputs, dim=1))))


class Tree(nn.Module):
    """Hierarchical aggregation tree; a one-level tree is two blocks joined by a Root.

    ``level_root`` trees also feed their (pooled) input to the deepest Root, which is how DLA
    aggregates across stages.
    """

    def __init__(self, levels: int, in_channels: int, out_channels: int, stride: int,
                 level_root: bool = False, root_channels: int = 0) -> None:
        super().__init__()
        if root_channels == 0:
            root_channels = 2 * out_channels
        if level_root:
            root_channels += in_channels
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project: nn.Sequential | None = None
        self.root: Root | None = None
        self.tree1: nn.Module
        self.tree2: nn.Module
        if levels == 1:
            self.tree1 = BasicBlock(in_channels, out_channels, stride)
            self.tree2 = BasicBlock(out_channels, out_channels)
            self.root = Root(root_channels, out_channels)
            if in_channels != out_channels:
                self.project = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
        else:
            self.tree1 = Tree(levels - 1, in_channels, out_channels, stride)
            self.tree2 = Tree(levels - 1, out_channels, out_channels, 1,
                              root_channels=root_channels + out_channels)

    def forward(self, x: torch.Tensor, children: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        bottom = x if self.downsample is None else self.downsample(x)
        if self.level_root:
            children = (*children, bottom)
        if self.root is None:
            x1 = self.tree1(x)
            return self.tree2(x1, (*children, x1))
        shortcut = bottom if self.project is None else self.project(bottom)
        x1 = self.tree1(x, shortcut)
        x2 = self.tree2(x1)
        return self.root([x2, x1, *children])


class DLA34(nn.Module):
    """DLA-34 without the classifier; returns level3..level5 (stride 8/16/32, 128/256/512 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.out_channels: tuple[int, ...] = CHANNELS[3:]
        # the trees' max-pooled shortcuts round sizes down while the strided convs round up, so every
        # stride-2 step needs an even size: input sides must be multiples of 32
        self.size_multiple = 32
        self.strides: tuple[int, ...] = FEATURE_STRIDES
        self.base_layer = _conv_bn_relu(3, CHANNELS[0], 7, 1)
        self.level0 = _conv_bn_relu(CHANNELS[0], CHANNELS[0], 3, 1)
        self.level1 = _conv_bn_relu(CHANNELS[0], CHANNELS[1], 3, 2)
        self.level2 = Tree(LEVELS[2], CHANNELS[1], CHANNELS[2], 2)
        self.level3 = Tree(LEVELS[3], CHANNELS[2], CHANNELS[3], 2, level_root=True)
        self.level4 = Tree(LEVELS[4], CHANNELS[3], CHANNELS[4], 2, level_root=True)
        self.level5 = Tree(LEVELS[5], CHANNELS[4], CHANNELS[5], 2, level_root=True)
        # The classifier plus the projections the official multi-level trees hold but never use.
        self.ignored_checkpoint_prefixes: tuple[str, ...] = ("fc.",) + tuple(
            f"{name}.project." for name, module in self.named_modules()
            if isinstance(module, Tree) and module.root is None
        )
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.level2(self.level1(self.level0(self.base_layer(x))))
        c3 = self.level3(x)
        c4 = self.level4(c3)
        c5 = self.level5(c4)
        return c3, c4, c5
