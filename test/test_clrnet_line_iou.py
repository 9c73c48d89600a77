"""Line IoU against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from refine_perception.models.clrnet.line_iou import line_iou, line_iou_loss

W = 800


def lane(x: float, rows: int = 72) -> torch.Tensor:
    return torch.full((1, rows), x, dtype=torch.float64)


def test_parallel_lanes_ten_pixels_apart() -> None:
    # per row: overlap 30 - 10 = 20, union 30 + 10 = 40
    assert line_iou(lane(100), lane(110), W).item() == pytest.approx(0.5)
    assert line_iou(lane(100), lane(100), W).item() == pytest.approx(1.0)


def test_invalid_target_rows_are_excluded() -> None:
    target = lane(110)
    target[0, :36] = -1e5  # absent rows of a GT
    target[0, 70:] = 800.0  # x == img_w is outside too
    pred = lane(100)
    pred[0, :36] = 5000.0  # whatever the prediction does there is ignored
    assert line_iou(pred, target, W).item() == pytest.approx(0.5)
    # on the 34 valid rows: 20 px apart on half of them (overlap 10, union 50), 0 apart on the other half
    pred = lane(110)
    pred[0, 36:53] = 130.0
    assert line_iou(pred, target, W).item() == pytest.approx((17 * 10 + 17 * 30) / (17 * 50 + 17 * 30))


def test_far_prediction_is_negative() -> None:
    # 100 px apart: overlap 30 - 100 = -70, union 130
    assert line_iou(lane(100), lane(200), W).item() == pytest.approx(-70 / 130)
    assert line_iou_loss(lane(100), lane(200), W).item() == pytest.approx(1 + 70 / 130)


def test_radius_and_loss_mean() -> None:
    assert line_iou(lane(100), lane(110), W, length=5).item() == pytest.approx(0.0)  # segments just touch
    pred = torch.cat([lane(100), lane(100)])
    target = torch.cat([lane(110), lane(100)])
    assert line_iou_loss(pred, target, W).item() == pytest.approx((0.5 + 0.0) / 2)


def test_pairwise_matches_aligned() -> None:
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(5, 72, generator=generator, dtype=torch.float64) * 900 - 50
    target = torch.rand(3, 72, generator=generator, dtype=torch.float64) * 900 - 50
    pairwise = line_iou(pred, target, W, aligned=False)
    assert pairwise.shape == (5, 3)
    for i in range(5):
        for j in range(3):
            assert pairwise[i, j] == pytest.approx(line_iou(pred[i : i + 1], target[j : j + 1], W).item())
    assert line_iou(lane(100), torch.cat([lane(110), lane(100)]), W, aligned=False).tolist() == [
        pytest.approx([0.5, 1.0])
    ]


def test_gradient_and_shape_errors() -> None:
    pred = lane(100).requires_grad_()
    line_iou_loss(pred, lane(110), W).backward()
    assert pred.grad is not None and (pred.grad < 0).all()  # moving right, towards the target, lowers the loss
    with pytest.raises(ValueError, match="as many"):
        line_iou(torch.zeros(2, 72), torch.zeros(3, 72), W)
    with pytest.raises(ValueError, match=r"\(N, R\)"):
        line_iou(torch.zeros(2, 72), torch.zeros(2, 71), W)
