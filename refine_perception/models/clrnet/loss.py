"""CLRNet's training loss (Zheng et al., CVPR 2022), plus our lane type and colour terms.

Per image and per refinement stage the priors are matched to the ground-truth lanes by dynamic-k
assignment (no gradient through it). Then:
  * classification: softmax focal loss over all 192 priors (matched = lane, others = background),
    summed and divided by the image's number of GT lanes (an image without lanes is not divided);
  * xytl: smooth-L1 of the matched pairs' [start_y * 71, start_x * 799, theta * 180, length * 71];
    the GT length is shifted by the start-row difference so that a prediction starting lower or higher
    is still asked to end where the GT ends;
  * Line IoU: 1 - Line IoU (e = 15 px at 800 wide) of the matched pairs' xs in pixels, or with
    `iou="lane"` 1 - LaneIoU (CLRerNet: a band of 7.5 px widened by the local slope, lane_iou.py).
Each of the three is summed over images x stages and divided by (images x stages), as the official code
does. The auxiliary segmentation is a cross-entropy with background weight 0.4 and 255 ignored.

Our addition: the head also predicts each prior's line type and colour, trained by cross-entropy of the
last stage's matched priors against their GT lane's labels (mean over all matched priors of the batch;
label -1 = not annotated, ignored, so datasets without these attributes do not teach "unknown").
Default weights 1.0 each: at initialisation these terms are ln 5 and ln 3, the same order as the focal
term times its weight, so they neither dominate nor vanish; they do not feed back into the assignment.

Target layout of a GT lane, a (78,) row as in the official labels, which `assign.py` expects:
  [0], [1]   not read (the official labels hold 0, 1)
  [2]        start_y, normalised: start row / 71, rows counted from the image bottom
  [3]        start_x in pixels of the 800-wide input
  [4]        theta: the lane's angle divided by pi
  [5]        length in rows (not normalised)
  [6:78]     x of each of the 72 rows in pixels, -1e5 (any value outside [0, 800)) where the lane is absent
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from refine_perception.models.clrnet.assign import dynamic_k_assign
from refine_perception.models.clrnet.head import LANE_COLORS, LANE_TYPES
from refine_perception.models.clrnet.lane_iou import lane_iou_loss
from refine_perception.models.clrnet.line_iou import line_iou_loss
from refine_perception.models.clrnet.model import CLRNetTrainOutput
from refine_perception.models.clrnet.priors import IMG_H, IMG_W, LANE_FIELDS, N_STRIPS
from refine_perception.models.clrnet.targets import ABSENT_X

IGNORE_LABEL = 255  # segmentation pixels left out of the loss
UNLABELLED = -1  # type / colour of a lane whose attribute is not annotated
SEG_BACKGROUND_WEIGHT = 0.4
LINE_IOU_RADIUS = 15.0  # half-width in pixels of the 800-wide input

IoUKind = Literal["line", "lane"]
IOU_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "line": lambda pred, target: line_iou_loss(pred, target, IMG_W, LINE_IOU_RADIUS),
    "lane": lambda pred, target: lane_iou_loss(pred, target, IMG_W),
}

LOSS_PRESETS: dict[str, dict[str, float]] = {
    "culane": {"cls_weight": 2.0, "xyt_weight": 0.2, "iou_weight": 2.0, "seg_weight": 1.0},
    "tusimple": {"cls_weight": 6.0, "xyt_weight": 0.5, "iou_weight": 2.0, "seg_weight": 1.0},
}


@dataclass(frozen=True)
class LaneTargets:
    """Ground truth of one image: lanes (G, 78) in the layout of the module docstring, their type and
    colour indices (G,) into LANE_TYPES / LANE_COLORS (-1 = not annotated), and the segmentation
    label map (H, W): 0 background, 1.. lane slots, 255 ignored."""

    lanes: torch.Tensor
    types: torch.Tensor
    colors: torch.Tensor
    seg: torch.Tensor

    def __post_init__(self) -> None:
        lanes = self.lanes
        if lanes.dim() != 2 or lanes.shape[1] != LANE_FIELDS or not torch.is_floating_point(lanes):
            raise ValueError(f"LaneTargets.lanes must be a float (G, {LANE_FIELDS}) tensor, "
                             f"got {lanes.dtype} {tuple(lanes.shape)}")
        if not bool(torch.isfinite(lanes).all()):
            raise ValueError(f"LaneTargets.lanes contain NaN or infinite values (absent rows use {ABSENT_X})")
        for name, labels, classes in (("types", self.types, LANE_TYPES), ("colors", self.colors, LANE_COLORS)):
            if labels.shape != (lanes.shape[0],) or torch.is_floating_point(labels):
                raise ValueError(f"LaneTargets.{name} must be an integer ({lanes.shape[0]},) tensor, "
                                 f"got {labels.dtype} {tuple(labels.shape)}")
            if bool(((labels < UNLABELLED) | (labels >= len(classes))).any()):
                raise ValueError(f"LaneTargets.{name} must lie in [{UNLABELLED}, {len(classes)}), "
                                 f"got {labels.tolist()}")
        if self.seg.dim() != 2 or torch.is_floating_point(self.seg):
            raise ValueError(f"LaneTargets.seg must be an integer (H, W) tensor, "
                             f"got {self.seg.dtype} {tuple(self.seg.shape)}")


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Softmax focal loss per sample (N,) of logits (N, C) against class indices (N,).

    As kornia's (which CLRNet uses) alpha weighs every class alike, not alpha for positives and
    1 - alpha for negatives; the log comes from log_softmax instead of log(softmax + 1e-8), which only
    differs where the official one would clip a vanishing probability.
    """
    log_prob = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return -alpha * (1.0 - log_prob.exp()).pow(gamma) * log_prob


class CLRNetLoss(nn.Module):
    """The weighted sum of the CLRNet terms and our type / colour terms; `forward` returns the total and
    the unweighted parts ("cls", "xytl", "iou", "seg", "type", "color")."""

    def __init__(
        self,
        cls_weight: float = 2.0,
        xyt_weight: float = 0.2,
        iou_weight: float = 2.0,
        seg_weight: float = 1.0,
        type_weight: float = 1.0,
        color_weight: float = 1.0,
        iou: IoUKind = "line",
    ) -> None:
        super().__init__()
        if iou not in IOU_LOSSES:
            raise ValueError(f"unknown IoU loss {iou!r}, expected one of {sorted(IOU_LOSSES)}")
        self.iou_loss = IOU_LOSSES[iou]
        self.weights = {
            "cls": cls_weight,
            "xytl": xyt_weight,
            "iou": iou_weight,
            "seg": seg_weight,
            "type": type_weight,
            "color": color_weight,
        }

    @classmethod
    def from_preset(cls, name: str, type_weight: float = 1.0, color_weight: float = 1.0,
                    iou: IoUKind = "line") -> CLRNetLoss:
        """The official weights of a dataset's configs ("culane" or "tusimple")."""
        if name not in LOSS_PRESETS:
            raise ValueError(f"unknown CLRNet loss preset {name!r}, expected one of {sorted(LOSS_PRESETS)}")
        return cls(**LOSS_PRESETS[name], type_weight=type_weight, color_weight=color_weight, iou=iou)

    def forward(
        self, output: CLRNetTrainOutput, targets: Sequence[LaneTargets]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = output.stages[0].shape[0]
        if len(targets) != batch:
            raise ValueError(f"CLRNetLoss got {len(targets)} targets for a batch of {batch} images")
        size = tuple(output.seg.shape[-2:])
        for index, target in enumerate(targets):
            if tuple(target.seg.shape) != size:
                raise ValueError(f"segmentation labels of image {index} have shape {tuple(target.seg.shape)}, "
                                 f"the model's segmentation output {size}")
        device = output.stages[0].device
        targets = [
            LaneTargets(t.lanes.to(device), t.types.to(device, torch.long), t.colors.to(device, torch.long),
                        t.seg.to(device, torch.long))
            for t in targets
        ]
        parts = self._lane_terms(output, targets)
        parts["seg"] = _seg_loss(output.seg, torch.stack([t.seg for t in targets]))
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, parts

    def _lane_terms(self, output: CLRNetTrainOutput, targets: Sequence[LaneTargets]) -> dict[str, torch.Tensor]:
        zero = output.stages[0].new_zeros(())
        cls_sum, xytl_sum, iou_sum = zero, zero, zero
        # image, prior, type and colour label of every last-stage match, for the attribute terms
        last_matches: list[torch.Tensor] = []
        last = len(output.stages) - 1
        for stage, predictions in enumerate(output.stages):
            for image, target in enumerate(targets):
                pred = predictions[image]
                prior_idx, gt_idx = dynamic_k_assign(pred.detach(), target.lanes, IMG_W, IMG_H)
                labels = torch.zeros(pred.shape[0], dtype=torch.long, device=pred.device)
                labels[prior_idx] = 1
                cls_sum = cls_sum + focal_loss(pred[:, :2], labels).sum() / max(target.lanes.shape[0], 1)
                if prior_idx.numel() == 0:
                    continue
                xytl_sum = xytl_sum + _xytl_loss(pred[prior_idx], target.lanes[gt_idx])
                iou_sum = iou_sum + self.iou_loss(pred[prior_idx, 6:] * (IMG_W - 1), target.lanes[gt_idx, 6:])
                if stage == last:
                    image_idx = torch.full_like(prior_idx, image)
                    labelled = [image_idx, prior_idx, target.types[gt_idx], target.colors[gt_idx]]
                    last_matches.append(torch.stack(labelled))
        count = len(targets) * len(output.stages)
        parts = {"cls": cls_sum / count, "xytl": xytl_sum / count, "iou": iou_sum / count}
        if last_matches:
            matches = torch.cat(last_matches, 1)
        else:
            matches = torch.zeros((4, 0), dtype=torch.long, device=zero.device)
        image_idx, prior_idx, type_labels, color_labels = matches
        parts["type"] = _attribute_loss(output.types[image_idx, prior_idx], type_labels)
        parts["color"] = _attribute_loss(output.colors[image_idx, prior_idx], color_labels)
        return parts


def _xytl_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (beta 1, mean) of matched pairs' start row, start x (px), angle (degrees) and length
    (rows); pred (M, 78) normalised, target (M, 78) in the label layout."""
    scale = pred.new_tensor([N_STRIPS, IMG_W - 1, 180.0, N_STRIPS])
    pred_yxtl = pred[:, 2:6] * scale
    with torch.no_grad():
        pred_start = (pred[:, 2] * N_STRIPS).round().clamp(0, N_STRIPS)
        target_start = (target[:, 2] * N_STRIPS).round()
        target_yxtl = torch.stack(
            [target[:, 2] * N_STRIPS, target[:, 3], target[:, 4] * 180.0, target[:, 5] - (pred_start - target_start)],
            dim=1,
        )
    return F.smooth_l1_loss(pred_yxtl, target_yxtl, beta=1.0)


def _attribute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of matched priors' logits (M, C) against their GT lane's labels (M,), averaged over
    the annotated ones; zero, still attached to the graph, when none is annotated."""
    summed = F.cross_entropy(logits, labels, ignore_index=UNLABELLED, reduction="sum")
    return summed / (labels != UNLABELLED).sum().clamp_min(1)


def _seg_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy of the auxiliary segmentation (B, C, H, W) against long labels (B, H, W)."""
    classes = logits.shape[1]
    bad = (labels != IGNORE_LABEL) & ((labels < 0) | (labels >= classes))
    if bool(bad.any()):
        raise ValueError(f"segmentation labels must lie in [0, {classes}) or be {IGNORE_LABEL}, "
                         f"found {sorted(set(labels[bad].tolist()))[:5]}")
    weight = logits.new_ones(classes)
    weight[0] = SEG_BACKGROUND_WEIGHT
    per_pixel = F.cross_entropy(logits, labels, weight=weight, ignore_index=IGNORE_LABEL, reduction="none")
    # the weighted mean of cross_entropy, written out so that a fully ignored batch gives 0, not NaN
    kept = labels != IGNORE_LABEL
    return per_pixel.sum() / weight[labels[kept]].sum().clamp_min(1e-12)
