"""The discriminative-loss network: the ERFNet encoder of SpatialEmbeddings with two decoders, one for a
per-pixel embedding (trained with the discriminative loss) and one for semantic logits (which pixels are
foreground, and of which class).

Why one output tensor: the runtime exports, quantises and serves every network as a single-output graph,
so the embedding and the logits travel concatenated (output.py takes them apart).

Why skip connections, which the SpatialEmbeddings network does not have: a stick is 2-6 pixels wide at
the network's input. ERFNet's decoder rebuilds full resolution from stride-8 features by transposed
convolutions alone, so a thin stick's edges have to be relearned from coarse features, and on CPU budgets
the masks stay blurred (a run without skips reached foreground IoU ~0.6 after 3.6k steps). Adding the
encoder's stride-4 and stride-2 features after each upsampling (as LinkNet does) hands the decoder the
edges directly, at the cost of two additions.

Why optional coordinates: ERFNet is translation-equivariant, so two sticks that look alike must still get
embeddings far apart from appearance and context alone. Appending each position's (x, y) in [-1, 1] to the
embedding decoder's input (CoordConv) gives it a cue that always separates distant instances. Whether that
pays on sticks is a matter of measurement, hence a switch (`coordinates`) recorded in the model file.

Why line channels (`line_channels` g > 0): a stick is a line, and every pixel of it shares the line's
normal n and its distance rho = n . p from the origin, both of which a pixel can know from its
neighbourhood alone (the edges say n, the position gives rho). A plain decoder cannot form the product of
an orientation and a position, so g of the D embedding channels are built as rho_j = a_j X + b_j Y + c_j
from three decoder outputs per channel and the pixel's position (X, Y) in units of `line_unit_px` input
pixels. Along a stick the decoder only has to hold a_j, b_j, c_j constant, a local task; two parallel
sticks then differ in rho, two crossing ones in a_j, b_j. Where a normal's sign is ambiguous (a stick along
the sign convention's edge) the decoder can shrink that channel's a_j, b_j and rely on another.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from refine_perception.models.discriminative.loss import DiscriminativeSettings
from refine_perception.models.spatial_embeddings.erfnet import (
    DEFAULT_INPUT_SIZE,
    Decoder,
    Encoder,
    check_images,
    checked_class_names,
    checked_input_size,
    scaled_channels,
)

DEFAULT_EMBEDDING_DIM = 8  # the authors' choice for Cityscapes (16 for the leaves of CVPPP)


def coordinate_features(like: torch.Tensor) -> torch.Tensor:
    """(N, 2, h, w): the x and y of each position of `like` (N, C, h, w), from -1 at the first to 1 at the last."""
    batch, _, height, width = like.shape
    xs = torch.arange(width, dtype=like.dtype, device=like.device) * (2.0 / max(width - 1, 1)) - 1.0
    ys = torch.arange(height, dtype=like.dtype, device=like.device) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)])
    return grid.expand(batch, 2, height, width)


class SkipDecoder(Decoder):
    """ERFNet's decoder with the encoder's stride-4 and stride-2 features added after the first and second
    upsampling (the parameters are the plain decoder's)."""

    def forward(self, x: torch.Tensor, quarter: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
        layers = self.layers
        x = layers[2](layers[1](layers[0](x) + quarter))
        x = layers[5](layers[4](layers[3](x) + half))
        return self.output(x)


class DiscriminativeNet(nn.Module):
    """Raw output (N, embedding_dim + num_classes + 1, H, W): the embedding, then the semantic logits with
    background first.

    Besides the weights, the model carries what a model file must record: the input size (height, width)
    images are resized to, the class names, and the loss's margins `delta_var` and `delta_dist`, which set
    the clustering's distances at inference.
    """

    def __init__(
        self,
        num_classes: int = 1,
        embedding_dim: int = DEFAULT_EMBEDDING_DIM,
        width: float = 1.0,
        *,
        coordinates: bool = False,
        line_channels: int = 0,
        line_unit_px: float = 16.0,
        input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
        class_names: Sequence[str] | None = None,
        delta_var: float = DiscriminativeSettings.delta_var,
        delta_dist: float = DiscriminativeSettings.delta_dist,
    ) -> None:
        super().__init__()
        if num_classes < 1 or embedding_dim < 1:
            raise ValueError(f"need num_classes >= 1 and embedding_dim >= 1, got {num_classes} and {embedding_dim}")
        if not 0 <= delta_var < delta_dist:
            raise ValueError(f"need 0 <= delta_var < delta_dist, got {delta_var} and {delta_dist}")
        if not 0 <= line_channels <= embedding_dim or not line_unit_px > 0:
            raise ValueError(f"need 0 <= line_channels <= embedding_dim and line_unit_px > 0, got {line_channels} "
                             f"and {line_unit_px}")
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.width = float(width)
        self.coordinates = coordinates
        self.line_channels = int(line_channels)
        self.line_unit_px = float(line_unit_px)
        self.input_size = checked_input_size(input_size)
        self.class_names = checked_class_names(num_classes, class_names)
        self.delta_var = float(delta_var)
        self.delta_dist = float(delta_dist)
        c1, c2, c3 = scaled_channels(width)
        self.encoder = Encoder((c1, c2, c3))
        # the decoder reads c3 channels, two more with the coordinates appended
        # the decoder gives the free channels, then a, b and c of each line channel
        self.embedding_decoder = SkipDecoder((c1, c2, c3 + 2 * coordinates), embedding_dim + 2 * self.line_channels)
        self.semantic_decoder = SkipDecoder((c1, c2, c3), num_classes + 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        layers = self.encoder.layers  # Downsampler, Downsampler + 5 blocks, Downsampler + 8 blocks
        half = layers[0](images)
        quarter = layers[1:7](half)
        features = layers[7:](quarter)
        embedding_input = torch.cat([features, coordinate_features(features)], dim=1) if self.coordinates else features
        embedding = self.embedding_decoder(embedding_input, quarter, half)
        if self.line_channels:
            embedding = self._with_lines(embedding)
        return torch.cat([embedding, self.semantic_decoder(features, quarter, half)], dim=1)

    def _with_lines(self, decoded: torch.Tensor) -> torch.Tensor:
        """The embedding from the decoder's output: the free channels, then rho_j = a_j X + b_j Y + c_j."""
        free = self.embedding_dim - self.line_channels
        g = self.line_channels
        a, b, c = decoded[:, free : free + g], decoded[:, free + g : free + 2 * g], decoded[:, free + 2 * g :]
        height, width = decoded.shape[-2:]
        xs = (torch.arange(width, dtype=decoded.dtype, device=decoded.device) - (width - 1) / 2) / self.line_unit_px
        ys = (torch.arange(height, dtype=decoded.dtype, device=decoded.device) - (height - 1) / 2) / self.line_unit_px
        return torch.cat([decoded[:, :free], a * xs + b * ys[:, None] + c], dim=1)
