"""Prior feature pooling and ROIGather, the part of CLRNet that turns a lane prior into a feature vector.

A prior is a line, not a box, so its features are read at 36 points along the line instead of an RoI
pool over a rectangle. The points alone see a thin strip of the image; lanes are often occluded or
worn, so ROIGather adds two sources of context (CLRNet paper, Sec. 3.2): the features the same prior
collected at the earlier, coarser refinement stages, and an attention over the whole (downsized)
feature map, whose output projection starts at zero so a fresh model begins from the local features.

Parameter names follow the official implementation (`convs`, `catconv`, `fc`, `fc_norm`, `f_key`,
`f_query`, `f_value`, `W`) so its checkpoints map onto this module by prefix alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from refine_perception.models.backbones.resnet import init_conv_bn

CONTEXT_SIZE = (10, 25)  # the attention's keys/values: every map is resized to the coarsest level's size
MID_CHANNELS = 48  # channels of each stage's pooled features before they are concatenated
KERNEL_ALONG_LANE = 9  # the 9x1 convs mix features of neighbouring points along the lane
CONTEXT_DROPOUT = 0.1


def pool_prior_features(feature: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample `feature` (B, C, H, W) at the prior points, returning (B * N, C, P, 1).

    `xs` is (B, N, P), or (N, P) when the whole batch shares the priors. `xs` and `ys` (P,) are
    normalised to [0, 1] over the map with corners at pixel centres (`align_corners=True`), so x = 0 is
    the first and x = 1 the last column; points outside the map read zeros. The (P, 1) layout lets
    the 9x1 convs run along each lane's points.
    """
    xs = xs.expand(feature.shape[0], -1, -1)
    if torch.onnx.is_in_onnx_export():
        sampled = _gather_bilinear(feature, xs, ys)
    else:
        grid = torch.stack([xs, ys.expand_as(xs)], dim=-1) * 2.0 - 1.0
        sampled = F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    # (B, C, N, P) -> (B, N, C, P) -> one row per prior
    return sampled.permute(0, 2, 1, 3).reshape(-1, feature.shape[1], xs.shape[-1], 1)


def _gather_bilinear(feature: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """grid_sample's numbers (B, C, N, P) as four gathers from the flattened map: what the ONNX export
    uses, because onnxruntime's GridSample kernel took 2.7 ms per refinement stage (96 priors x 18
    points, two cores), a fifth of the whole int8 network; torch's own grid_sample is faster in eager."""
    batch, channels, height, width = feature.shape
    num_priors, num_points = xs.shape[1], xs.shape[2]
    x = (xs * (width - 1)).reshape(batch, 1, -1)
    y = (ys * (height - 1)).expand_as(xs).reshape(batch, 1, -1)
    x0, y0 = torch.floor(x), torch.floor(y)
    flat = feature.reshape(batch, channels, height * width)
    sampled = torch.zeros(batch, channels, x.shape[-1], dtype=feature.dtype, device=feature.device)
    for cx, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
        for cy, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
            inside = (cx >= 0) & (cx <= width - 1) & (cy >= 0) & (cy <= height - 1)
            index = (cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1)).long()
            values = flat.gather(2, index.expand(-1, channels, -1))
            sampled = sampled + values * (wx * wy * inside.to(feature.dtype))
    return sampled.reshape(batch, channels, num_priors, num_points)


class ConvBNReLU(nn.Module):
    """Bias-free conv + BatchNorm + ReLU, its layers named `conv`/`bn` as mmcv's ConvModule names them."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        padding = (kernel_size[0] // 2, kernel_size[1] // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if conv.kernel_size[0] > 1 and conv.kernel_size[1] == 1 and not torch.onnx.is_in_onnx_export():
            # the (k, 1) kernels only ever run over (N, C, P, 1) rows of prior points: the same numbers
            # as Conv2d, but oneDNN runs them about a third faster as a 1-D convolution. Not in ONNX:
            # there the squeeze becomes an If node that keeps onnxruntime from fusing conv, BN and ReLU.
            y = F.conv1d(x.squeeze(-1), conv.weight.squeeze(-1), padding=conv.padding[0]).unsqueeze(-1)
        else:
            y = conv(x)
        return F.relu(self.bn(y))


class ROIGather(nn.Module):
    """Per-prior feature vectors (B, N, hidden) from the pooled features of all stages so far plus global context.

    Stage t concatenates the pooled features of stages 0..t (each through its own 9x1 conv, `project`),
    fuses them with a stage-specific 9x1 conv and flattens the P points into one vector per prior. The
    official code recomputes every earlier stage's projection at each stage; the caller keeps them
    instead (same outputs and gradients, half the convolutions). Each
    prior then attends over the resized feature map of the current stage; the attention result goes
    through `W`, a per-prior 1x1 Conv1d initialised to zero, so at initialisation the context adds
    nothing and the output equals `local_features`.
    """

    def __init__(self, channels: int, num_priors: int, sample_points: int, hidden_dim: int, stages: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_priors = num_priors
        kernel = (KERNEL_ALONG_LANE, 1)
        self.convs = nn.ModuleList(ConvBNReLU(channels, MID_CHANNELS, kernel) for _ in range(stages))
        self.catconv = nn.ModuleList(ConvBNReLU(MID_CHANNELS * (t + 1), channels, kernel) for t in range(stages))
        self.fc = nn.Linear(sample_points * channels, hidden_dim)
        self.fc_norm = nn.LayerNorm(hidden_dim)

        self.f_key = ConvBNReLU(channels, channels, (1, 1))
        self.f_query = nn.Sequential(nn.Conv1d(num_priors, num_priors, 1, groups=num_priors), nn.ReLU())
        self.f_value = nn.Conv2d(channels, channels, 1)
        self.W = nn.Conv1d(num_priors, num_priors, 1, groups=num_priors)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)

    def project(self, pooled: torch.Tensor, stage: int) -> torch.Tensor:
        """Stage `stage`'s pooled prior features (B*N, C, P, 1) through that stage's 9x1 conv."""
        return self.convs[stage](pooled)

    def local_features(self, projected: Sequence[torch.Tensor], stage: int) -> torch.Tensor:
        """The prior vectors (B, N, hidden) from the projected features of stages 0..`stage` alone."""
        if len(projected) != stage + 1:
            raise ValueError(f"stage {stage} needs the features of {stage + 1} stages, got {len(projected)}")
        fused = self.catconv[stage](torch.cat(list(projected), dim=1))
        roi = F.relu(self.fc_norm(self.fc(fused.flatten(1))))
        return roi.reshape(-1, self.num_priors, roi.shape[-1])

    def forward(self, projected: Sequence[torch.Tensor], feature: torch.Tensor, stage: int) -> torch.Tensor:
        roi = self.local_features(projected, stage)
        key = F.interpolate(self.f_key(feature), size=CONTEXT_SIZE).flatten(2)  # (B, C, K)
        value = F.interpolate(self.f_value(feature), size=CONTEXT_SIZE).flatten(2).transpose(1, 2)  # (B, K, C)
        query = self.f_query(roi)  # (B, N, C)
        attention = torch.softmax(query @ key * self.channels**-0.5, dim=-1)  # (B, N, K)
        context = self.W(attention @ value)
        return roi + F.dropout(context, p=CONTEXT_DROPOUT, training=self.training)
