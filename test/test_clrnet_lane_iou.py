"""LaneIoU against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from refine_perception.models.clrnet.lane_iou import FRAME_H, FRAME_W, lane_half_widths, lane_iou, lane_iou_loss
from refine_perception.models.clrnet.line_iou import line_iou
from refine_perception.models.clrnet.priors import N_STRIPS

W = 800
DY = 2 * FRAME_H / N_STRIPS  # the rise over which LaneIoU measures a slope


def slanted(x0: float, step: float, rows: int = 72) -> torch.Tensor:
    """A straight lane moving `step` input pixels per row."""
    return (x0 + step * torch.arange(rows, dtype=torch.float64))[None]


def test_vertical_lanes_use_the_plain_band() -> None:
    # half-width 7.5 on every row: 5 px apart -> overlap 15 - 5, union 15 + 5
    a, b = slanted(100, 0), slanted(105, 0)
    assert lane_iou(a, b, W).item() == pytest.approx(0.5)
    assert lane_iou(a, b, W).item() == pytest.approx(line_iou(a, b, W, 7.5).item())


def test_band_widens_by_one_over_cos_of_the_angle() -> None:
    # 60 degrees from the vertical in the 1640 x 320 frame: tan = sqrt(3), so the half-width doubles to 15
    step = DY * math.sqrt(3) / 2 / (FRAME_W / W)
    widths = lane_half_widths(slanted(100, step), W)
    assert torch.allclose(widths, torch.full_like(widths, 15.0))
    # 10 px apart with half-widths 15: overlap 30 - 10, union 30 + 10
    assert lane_iou(slanted(100, step), slanted(110, step), W).item() == pytest.approx(0.5)


def test_rows_next_to_absent_ones_keep_the_plain_band() -> None:
    target = slanted(100, 0)
    target[0, :10] = -1e5
    widths = lane_half_widths(target, W)
    assert widths[0, 9].item() == pytest.approx(7.5) and widths[0, 10].item() == pytest.approx(7.5)
    # the absent rows count in neither sum: 5 px apart on the 62 others
    assert lane_iou(slanted(105, 0), target, W).item() == pytest.approx(0.5)


def test_pairwise_matches_aligned_and_loss_is_differentiable() -> None:
    preds = torch.stack([slanted(100, 1.0)[0], slanted(300, -2.0)[0], slanted(400, 0.5)[0]])
    targets = torch.stack([slanted(104, 1.2)[0], slanted(290, -2.0)[0]])
    table = lane_iou(preds, targets, W, aligned=False)
    assert table.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert table[i, j].item() == pytest.approx(lane_iou(preds[i:i + 1], targets[j:j + 1], W).item())
    pred = slanted(100, 1.0).requires_grad_()
    loss = lane_iou_loss(pred, slanted(104, 1.0), W)
    loss.backward()
    # moving the prediction towards the target lowers the loss on every row
    assert pred.grad is not None and bool((pred.grad < 0).all())
