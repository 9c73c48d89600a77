"""Line IoU (CLRNet, CVPR 2022): the IoU of two lanes seen as 1-D segments of half-width `length` around
each of their row xs, summed over the rows before dividing, so the whole lane is regressed as one unit.

Rows where the target lane is absent (x < 0 or x >= img_w, the GT uses -1e5 there) count in neither sum,
as in the official code; the prediction is not masked. Per-row overlap can be negative when the two
segments are apart, so the IoU lies in (-1, 1] and keeps a gradient for far-away predictions.
"""

from __future__ import annotations

import torch


def line_iou(
    pred_xs: torch.Tensor,
    target_xs: torch.Tensor,
    img_w: int,
    length: float | tuple[torch.Tensor, torch.Tensor] = 15.0,
    aligned: bool = True,
) -> torch.Tensor:
    """Line IoU of lanes given as xs in pixels, (N, R) each.

    aligned: pairs row by row, pred (N, R) with target (N, R) -> (N,), for the loss.
    Otherwise every pair, pred (N, R) with target (M, R) -> (N, M), for the label assignment.
    `length` is one half-width for every row, or per-row half-widths (pred's, target's) shaped like the
    xs, as LaneIoU (lane_iou.py) gives them.
    """
    if pred_xs.dim() != 2 or target_xs.dim() != 2 or pred_xs.shape[1] != target_xs.shape[1]:
        raise ValueError(
            f"line_iou needs pred (N, R) and target (M, R) xs, got {tuple(pred_xs.shape)} and "
            f"{tuple(target_xs.shape)}"
        )
    if aligned and pred_xs.shape[0] != target_xs.shape[0]:
        raise ValueError(f"aligned line_iou needs as many predictions as targets, got {pred_xs.shape[0]} "
                         f"and {target_xs.shape[0]}")
    if isinstance(length, tuple):
        pred_half, target_half = length
    else:
        pred_half, target_half = torch.full_like(pred_xs, length), torch.full_like(target_xs, length)
    if not aligned:
        pred_xs, pred_half = pred_xs[:, None, :], pred_half[:, None, :]
        target_xs, target_half = target_xs[None, :, :], target_half[None, :, :]
    pred_lo, pred_hi = pred_xs - pred_half, pred_xs + pred_half
    target_lo, target_hi = target_xs - target_half, target_xs + target_half
    overlap = torch.minimum(pred_hi, target_hi) - torch.maximum(pred_lo, target_lo)
    union = torch.maximum(pred_hi, target_hi) - torch.minimum(pred_lo, target_lo)
    valid = (target_xs >= 0) & (target_xs < img_w)
    zero = overlap.new_zeros(())
    overlap = torch.where(valid, overlap, zero)
    union = torch.where(valid, union, zero)
    return overlap.sum(-1) / (union.sum(-1) + 1e-9)


def line_iou_loss(pred_xs: torch.Tensor, target_xs: torch.Tensor, img_w: int, length: float = 15.0) -> torch.Tensor:
    """Mean of 1 - Line IoU over matched (prediction, target) pairs, xs in pixels."""
    return (1.0 - line_iou(pred_xs, target_xs, img_w, length, aligned=True)).mean()
