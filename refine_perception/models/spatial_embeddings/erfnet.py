"""The branched ERFNet of SpatialEmbeddings: one shared encoder, one decoder for offsets and sigma and
one for the seed maps.

ERFNet (Romera et al., 2017) is chosen, as in the paper, because its factorised 3x1/1x3 residual blocks
give a large receptive field (dilations up to 16 at stride 8) for few operations, which is what a 2-core
CPU can afford. `width` scales every channel count (the paper's 16/64/128 at 1.0) so that a narrower,
cheaper network can be the CPU default; the computation falls roughly with its square.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BASE_CHANNELS = (16, 64, 128)  # after the first, second and third downsampler at width 1.0
DEFAULT_INPUT_SIZE = (240, 320)  # (height, width): a 640x480 camera frame halved
# Embedding units are this many input pixels. tanh bounds an offset to +-1 unit, which must reach the
# centre of the longest stick (half-length up to ~100 px at 320x240, ~200 px at 640x480) without
# saturating; the paper's 1024 px per unit on 2048x1024 images is the same choice for a larger image.
DEFAULT_PIXELS_PER_UNIT = 256.0


class Downsampler(nn.Module):
    """Halves the resolution: a stride-2 3x3 conv gives the new channels, a 2x2 max pool keeps the old."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"a downsampler adds channels: {in_channels} -> {out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(torch.cat([self.conv(x), F.max_pool2d(x, 2)], dim=1)))


class NonBottleneck1d(nn.Module):
    """Residual block of two factorised 3x3 convs (3x1 then 1x3); the second pair is dilated."""

    def __init__(self, channels: int, dropout: float = 0.0, dilation: int = 1) -> None:
        super().__init__()
        self.conv1_v = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1_h = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-3)
        self.conv2_v = nn.Conv2d(channels, channels, (3, 1), padding=(dilation, 0), dilation=(dilation, 1))
        self.conv2_h = nn.Conv2d(channels, channels, (1, 3), padding=(0, dilation), dilation=(1, dilation))
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1_h(F.relu(self.conv1_v(x)))))
        y = self.bn2(self.conv2_h(F.relu(self.conv2_v(y))))
        return F.relu(x + self.dropout(y))


class Upsampler(nn.Module):
    """Doubles the resolution with a 3x3 transposed conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Encoder(nn.Module):
    """Stride-8 features: 5 plain blocks at stride 4, then two rounds of dilations 2, 4, 8, 16 at stride 8."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        c1, c2, c3 = channels
        layers: list[nn.Module] = [Downsampler(3, c1), Downsampler(c1, c2)]
        layers += [NonBottleneck1d(c2, 0.03) for _ in range(5)]
        layers.append(Downsampler(c2, c3))
        layers += [NonBottleneck1d(c3, 0.3, dilation) for _ in range(2) for dilation in (2, 4, 8, 16)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """Back to full resolution in three doublings, with two plain blocks after each of the first two."""

    def __init__(self, channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.layers = nn.Sequential(
            Upsampler(c3, c2), NonBottleneck1d(c2), NonBottleneck1d(c2),
            Upsampler(c2, c1), NonBottleneck1d(c1), NonBottleneck1d(c1),
        )
        self.output = nn.ConvTranspose2d(c1, out_channels, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(x))


def scaled_channels(width: float) -> tuple[int, int, int]:
    """The encoder's channel counts at `width`; the first must exceed the 3 input channels."""
    if not 16 * width >= 3.5:
        raise ValueError(f"width must give more than 3 channels after the first downsampler "
                         f"(16 * width >= 3.5), got {width}")
    c1, c2, c3 = (round(base * width) for base in BASE_CHANNELS)
    return c1, c2, c3


def checked_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """(height, width) that a network of three downsamplers can take: positive multiples of 8."""
    if len(input_size) != 2 or min(input_size) < 8 or input_size[0] % 8 or input_size[1] % 8:
        raise ValueError(f"input_size (height, width) must be positive multiples of 8, got {input_size}")
    return int(input_size[0]), int(input_size[1])


def checked_class_names(num_classes: int, class_names: Sequence[str] | None) -> tuple[str, ...]:
    """The names given, one per class, or by default "stick" for one class and class_k for several."""
    names = tuple(class_names) if class_names is not None else (
        ("stick",) if num_classes == 1 else tuple(f"class_{k}" for k in range(num_classes)))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    return names


def check_images(images: torch.Tensor) -> None:
    """Refuse a batch the network cannot take: three halvings need H and W multiples of 8."""
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] % 8 or images.shape[3] % 8:
        raise ValueError(f"expected images (N, 3, H, W) with H and W multiples of 8, got {tuple(images.shape)}")


class SpatialEmbeddingNet(nn.Module):
    """Raw output (N, 2 + n_sigma + num_classes, H, W): offsets, sigma, then one seed logit per class.

    Besides the weights, the model carries what it was trained with and a model file must record:
    the input size (height, width) images are resized to, the embedding scale in input pixels per
    unit, and the class names.
    """

    def __init__(
        self,
        num_classes: int = 1,
        n_sigma: int = 2,
        width: float = 1.0,
        *,
        input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
        pixels_per_unit: float = DEFAULT_PIXELS_PER_UNIT,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1 or n_sigma not in (1, 2):
            raise ValueError(f"need num_classes >= 1 and n_sigma 1 or 2, got {num_classes} and {n_sigma}")
        if not pixels_per_unit > 0:
            raise ValueError(f"pixels_per_unit must be positive, got {pixels_per_unit}")
        self.num_classes = num_classes
        self.n_sigma = n_sigma
        self.width = float(width)
        self.input_size = checked_input_size(input_size)
        self.pixels_per_unit = float(pixels_per_unit)
        self.class_names = checked_class_names(num_classes, class_names)
        channels = scaled_channels(width)
        self.encoder = Encoder(channels)
        self.embedding_decoder = Decoder(channels, 2 + n_sigma)
        self.seed_decoder = Decoder(channels, num_classes)
        self._init_output()

    def _init_output(self) -> None:
        """The paper's start: zero offsets (every pixel embeds at its own position) and sigma 1 everywhere
        (a narrow kernel, exp(10) per squared unit), so instances begin small and grow."""
        output = self.embedding_decoder.output
        with torch.no_grad():
            output.weight.zero_()
            output.bias[:2].zero_()
            output.bias[2:].fill_(1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        features = self.encoder(images)
        return torch.cat([self.embedding_decoder(features), self.seed_decoder(features)], dim=1)
