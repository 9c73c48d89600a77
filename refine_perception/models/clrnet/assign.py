"""CLRNet's label assignment: SimOTA-style dynamic-k matching of priors to ground-truth lanes, per image
and per refinement stage.

The cost of a (prior, GT) pair mixes how close the lanes are (mean |dx| over the GT's rows, distance of
the start points, angle difference, each turned into a score in (0.01, 1.01] by dividing by its maximum
over all pairs) with a focal-style classification cost, so a prior is cheap when it already lies on the
lane and already believes it is a lane:
    cost = -(distance_score * start_xy_score * theta_score)^2 * 3 + cls_cost * 1.
Each GT takes its k cheapest priors, where k = int(sum of its 4 largest Line IoUs, negatives as 0),
at least 1, so well-covered lanes get more positives.

A prior chosen by several GTs keeps only its cheapest one among them. The official code (and every fork
before CLRerNet's fix of Aug 2025) zeroes only column 0 of the matching matrix for such priors, so a prior
chosen by GTs 1 and 2 keeps both and `argmax` then gives it GT 1 whatever the costs. CLRerNet's fix
re-assigns the prior to its cheapest GT over all GTs; we pick among the GTs that chose it, so a prior is
never given to a GT whose top-k did not include it.
"""

from __future__ import annotations

import torch

from refine_perception.models.clrnet.line_iou import line_iou
from refine_perception.models.clrnet.priors import IMG_H, IMG_W, LANE_FIELDS

CANDIDATE_K = 4  # how many of the best Line IoUs set a GT's dynamic k


def _normalised_score(distance: torch.Tensor) -> torch.Tensor:
    """1 - d / max(d) + 0.01; the max is floored so identical pairs do not divide by zero."""
    return 1.0 - distance / distance.max().clamp_min(1e-9) + 1e-2


def focal_cost(lane_logits: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal-style cost (P,) of calling each prior a lane: sigmoid of its lane logit (column 1), positive
    minus negative focal term, as in the official assignment."""
    prob = lane_logits[:, 1].sigmoid()
    eps = 1e-12
    neg = -(1 - prob + eps).log() * (1 - alpha) * prob.pow(gamma)
    pos = -(prob + eps).log() * alpha * (1 - prob).pow(gamma)
    return pos - neg


def assignment_cost(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    img_w: int,
    img_h: int,
    distance_weight: float = 3.0,
    cls_weight: float = 1.0,
) -> torch.Tensor:
    """The (P, G) cost matrix. predictions (P, 78) as the head outputs them (start_x and xs normalised by
    img_w - 1); targets (G, 78) as the official labels (start_x and xs in pixels, -1e5 on absent rows)."""
    pred_xs = predictions[:, 6:] * (img_w - 1)
    target_xs = targets[:, 6:]
    valid = (target_xs >= 0) & (target_xs < img_w)
    gaps = (pred_xs[:, None, :] - target_xs[None, :, :]).abs() * valid[None]
    mean_gap = gaps.sum(-1) / (valid.sum(-1).to(gaps.dtype) + 1e-9)
    distance_score = _normalised_score(mean_gap)

    pred_start = torch.stack([predictions[:, 2] * (img_h - 1), predictions[:, 3] * (img_w - 1)], 1)
    target_start = torch.stack([targets[:, 2] * (img_h - 1), targets[:, 3]], 1)
    start_score = _normalised_score(torch.cdist(pred_start, target_start))

    theta_gap = (predictions[:, 4, None] - targets[None, :, 4]).abs() * 180
    theta_score = _normalised_score(theta_gap)

    similarity = distance_score * start_score * theta_score
    return -similarity.pow(2) * distance_weight + focal_cost(predictions[:, :2])[:, None] * cls_weight


def dynamic_k_match(cost: torch.Tensor, ious: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(prior_idx, gt_idx) from a (P, G) cost and (P, G) Line IoU: every GT takes its k cheapest priors,
    then a prior taken by several GTs keeps the cheapest of them. Pairs come sorted by prior index."""
    num_priors, num_gt = cost.shape
    if num_priors == 0 or num_gt == 0:
        raise ValueError(f"dynamic_k_match needs at least one prior and one GT, got cost {tuple(cost.shape)}")
    top_ious = ious.clamp_min(0).topk(min(CANDIDATE_K, num_priors), dim=0).values
    ks = top_ious.sum(0).int().clamp(1, num_priors)
    ranks = cost.argsort(dim=0, stable=True).argsort(dim=0, stable=True)  # rank of each prior within its GT's column
    chosen = ranks < ks[None, :]
    masked_cost = torch.where(chosen, cost, torch.full_like(cost, float("inf")))
    best_gt = masked_cost.argmin(1)
    prior_idx = chosen.any(1).nonzero().flatten()
    return prior_idx, best_gt[prior_idx]


def dynamic_k_assign(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    img_w: int = IMG_W,
    img_h: int = IMG_H,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matched (prior_idx, gt_idx) for one image: predictions (P, 78) of the head, targets (G, 78) of the
    image's real lanes (official label layout). No gradient flows through the assignment."""
    if predictions.dim() != 2 or predictions.shape[1] != LANE_FIELDS:
        raise ValueError(f"predictions must have shape (P, {LANE_FIELDS}), got {tuple(predictions.shape)}")
    if targets.dim() != 2 or targets.shape[1] != LANE_FIELDS:
        raise ValueError(f"targets must have shape (G, {LANE_FIELDS}), got {tuple(targets.shape)}")
    if predictions.shape[0] == 0:
        raise ValueError("predictions hold no prior")
    if targets.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=predictions.device)
        return empty, empty
    if not (torch.isfinite(predictions).all() and torch.isfinite(targets).all()):
        raise ValueError("predictions or targets contain NaN or infinite values")
    with torch.no_grad():
        cost = assignment_cost(predictions, targets, img_w, img_h)
        ious = line_iou(predictions[:, 6:] * (img_w - 1), targets[:, 6:], img_w, aligned=False)
        return dynamic_k_match(cost, ious)
