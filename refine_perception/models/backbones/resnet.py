"""ResNet-18/34 feature extractors whose parameter names match torchvision's ImageNet checkpoints."""

from __future__ import annotations

import torch
from torch import nn

# Output of the last BasicBlock of each stage, for the stride-8/16/32 stages CLRNet's FPN consumes.
FEATURE_STRIDES: tuple[int, ...] = (8, 16, 32)


def init_conv_bn(model: nn.Module) -> None:
    """He-normal (fan-out) convolutions and unit/zero BatchNorm, the init both torchvision and DLA use."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with an identity (or 1x1-projected) shortcut.

    DLA reuses this block but computes the shortcut itself (max-pool + projection shared by the
    tree), so ``forward`` accepts an explicit shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        if shortcut is None:
            shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [BasicBlock(in_channels, out_channels, stride, downsample)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """BasicBlock ResNet without the classifier; returns the C3, C4, C5 maps (stride 8, 16, 32).

    The stride-4 map is not returned because CLRNet's FPN drops it; `pyramid` gives every stride, for
    decoders that refine down to stride 2. `width` scales every stage's channels (1.0: torchvision's
    64..512, whose checkpoints then load); narrower networks are for CPU budgets trained from scratch.
    """

    # Checkpoint entries that belong to the ImageNet classifier, which this backbone does not have.
    ignored_checkpoint_prefixes: tuple[str, ...] = ("fc.",)

    def __init__(self, blocks_per_stage: tuple[int, int, int, int], width: float = 1.0) -> None:
        super().__init__()
        if not 8 * width >= 1:
            raise ValueError(f"width must leave at least 8 channels in the first stage, got {width}")
        c1, c2, c3, c4 = (round(base * width) for base in (64, 128, 256, 512))
        self.pyramid_channels: tuple[int, ...] = (c1, c1, c2, c3, c4)  # strides 2, 4, 8, 16, 32
        self.out_channels: tuple[int, ...] = (c2, c3, c4)
        self.size_multiple = 8  # strided convs with padding take odd sizes; the FPN upsamples to exact sizes
        self.strides: tuple[int, ...] = FEATURE_STRIDES
        self.conv1 = nn.Conv2d(3, c1, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _make_stage(c1, c1, blocks_per_stage[0], 1)
        self.layer2 = _make_stage(c1, c2, blocks_per_stage[1], 2)
        self.layer3 = _make_stage(c2, c3, blocks_per_stage[2], 2)
        self.layer4 = _make_stage(c3, c4, blocks_per_stage[3], 2)
        init_conv_bn(self)

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The maps at strides 2, 4, 8, 16 and 32 (channels `pyramid_channels`)."""
        s2 = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(s2))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        return s2, s4, s8, s16, self.layer4(s16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, _, c3, c4, c5 = self.pyramid(x)
        return c3, c4, c5


def resnet18(width: float = 1.0) -> ResNet:
    return ResNet((2, 2, 2, 2), width)


def resnet34() -> ResNet:
    return ResNet((3, 4, 6, 3))
