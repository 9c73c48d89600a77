"""CLRNet's head: learnable lane priors refined in three stages from the coarsest FPN level to the finest.

Each stage pools every prior's features along its current line, classifies it and regresses a
correction of (start_y, start_x, theta), a length and 72 x offsets. The next stage starts from the
corrected straight line (without the offsets), so high-level maps place the lanes roughly and the
fine maps adjust them (the paper's "cross layer refinement"). Besides the official outputs the head
predicts each prior's line type and colour from the same last-stage prior features.

With `pooling="lane"` (ours) the later stages still refine that straight line but pool their features
along the previous stage's whole lane, offsets included: on a sharp curve the far end of the straight
line lies off the marking, so the official pooling (`"line"`) reads the far rows beside the lane.

Unlike the official code, which keeps the priors in buffers refreshed only in training, the priors
are computed from the embedding on every forward: it is a (192, 3) -> (192, 72) formula, so it costs
nothing, a loaded checkpoint can never disagree with stale buffers, and an ONNX export still bakes
the result as constants by constant folding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from refine_perception.models.clrnet.priors import (
    NUM_POINTS,
    NUM_PRIORS,
    SAMPLE_POINTS,
    init_prior_params,
    prior_lines,
    prior_ys,
    sample_indices,
)
from refine_perception.models.clrnet.roi_gather import ROIGather, pool_prior_features

LANE_TYPES = ("unknown", "solid", "dashed", "double", "road_edge")
LANE_COLORS = ("unknown", "white", "yellow")
STAGES = 3
HIDDEN_DIM = 64
SEG_DROPOUT = 0.1
OUTPUT_INIT_STD = 1e-3  # the output layers start near zero: logits near uniform, priors nearly unmoved
Pooling = Literal["line", "lane"]
POOLINGS: tuple[Pooling, ...] = ("line", "lane")


def _mlp(width: int) -> nn.Sequential:
    """Two Linear+ReLU layers; indices 0 and 2 hold the weights, as in the official `*_modules` lists."""
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())


class SegDecoder(nn.Module):
    """Auxiliary lane segmentation from the concatenated pyramid, used only as a training signal."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(SEG_DROPOUT)
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.conv(self.dropout(x)), size=size, mode="bilinear", align_corners=False)


class CLRHead(nn.Module):
    """Lane priors refined over the FPN levels; see the module docstring for the idea.

    `forward` takes the FPN maps fine to coarse and returns one (B, 192, 78) tensor per stage in the
    official layout, plus type (B, 192, 5) and colour (B, 192, 3) logits of the last stage.
    """

    def __init__(self, channels: int = 64, num_seg_classes: int = 5, num_priors: int = NUM_PRIORS,
                 sample_points: int = SAMPLE_POINTS, pooling: Pooling = "line") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.prior_embeddings = nn.Embedding(num_priors, 3)
        with torch.no_grad():
            self.prior_embeddings.weight.copy_(init_prior_params(num_priors))
        # the pooling points run from the top of the image down, the order the official weights expect
        rows = sample_indices(sample_points).flip(0)
        self.register_buffer("sample_rows", rows, persistent=False)
        self.register_buffer("sample_ys", prior_ys()[rows], persistent=False)

        self.roi_gather = ROIGather(channels, num_priors, sample_points, HIDDEN_DIM, STAGES)
        self.cls_modules = _mlp(HIDDEN_DIM)
        self.reg_modules = _mlp(HIDDEN_DIM)
        self.cls_layers = nn.Linear(HIDDEN_DIM, 2)
        self.reg_layers = nn.Linear(HIDDEN_DIM, 3 + 1 + NUM_POINTS)  # d(start_y, start_x, theta), length, dxs
        self.type_layers = nn.Linear(HIDDEN_DIM, len(LANE_TYPES))
        self.color_layers = nn.Linear(HIDDEN_DIM, len(LANE_COLORS))
        for layer in (self.cls_layers, self.reg_layers, self.type_layers, self.color_layers):
            for parameter in layer.parameters():
                nn.init.normal_(parameter, std=OUTPUT_INIT_STD)
        self.seg_decoder = SegDecoder(channels * STAGES, num_seg_classes)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        if len(features) != STAGES:
            raise ValueError(f"CLRHead expects {STAGES} FPN maps, got {len(features)}")
        # (N, 3) for the first stage, shared by the batch so that its lines fold into ONNX constants;
        # (B, N, 3) once the first refinement has broadcast it against the per-image regression
        params = self.prior_embeddings.weight
        lines = prior_lines(params)
        projected: list[torch.Tensor] = []
        stages: list[torch.Tensor] = []
        for stage, feature in enumerate(reversed(features)):
            pooled = pool_prior_features(feature, lines[..., self.sample_rows], self.sample_ys)
            projected.append(self.roi_gather.project(pooled, stage))
            roi = self.roi_gather(projected, feature, stage)
            cls_logits = self.cls_layers(self.cls_modules(roi))
            prediction = self.refine(params, cls_logits, self.reg_layers(self.reg_modules(roi)))
            stages.append(prediction)
            # the next stage starts from the refined straight line; gradients do not flow back through it
            params = prediction[..., 2:5].detach()
            lines = prediction[..., 6:].detach() if self.pooling == "lane" else prior_lines(params)
        return stages, self.type_layers(roi), self.color_layers(roi)

    @staticmethod
    def refine(params: torch.Tensor, cls_logits: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
        """One stage's lanes (B, N, 78) from its priors, (B, N, 3) or batch-shared (N, 3), and raw
        outputs (B, N, 2), (B, N, 76).

        The parameters move by reg[:3], reg[3] is the length, and the xs are the refined straight line
        plus the per-row offsets reg[4:]. Built with `cat` rather than slice assignment so the ONNX
        graph has no ScatterND, which older TensorRT versions cannot parse.
        """
        refined = params + reg[..., :3]
        xs = prior_lines(refined) + reg[..., 4:]
        return torch.cat([cls_logits, refined, reg[..., 3:4], xs], dim=-1)

    def segment(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Segmentation logits (B, classes, *size) from all maps upsampled to the finest one, coarsest first."""
        finest = features[0].shape[-2:]
        stacked = [F.interpolate(f, size=finest, mode="bilinear", align_corners=False) for f in reversed(features)]
        return self.seg_decoder(torch.cat(stacked, dim=1), size)
