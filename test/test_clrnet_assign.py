"""Dynamic-k label assignment: the cost by hand, dynamic k, and the conflict resolution against a loop
port of the official matching (which keeps double matches)."""

from __future__ import annotations

import math

import pytest
import torch

from refine_perception.models.clrnet.assign import assignment_cost, dynamic_k_assign, dynamic_k_match

W, H = 800, 320


def prediction(x_px: float, theta: float = 0.5, logits: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """A vertical head output at x_px, starting on the bottom row (normalised layout)."""
    row = torch.zeros(78, dtype=torch.float64)
    row[0], row[1] = logits
    row[3] = x_px / (W - 1)
    row[4] = theta
    row[5] = 1.0
    row[6:] = x_px / (W - 1)
    return row


def target(x_px: float, theta: float = 0.5) -> torch.Tensor:
    """A vertical GT lane at x_px over all rows (official label layout: pixels)."""
    row = torch.zeros(78, dtype=torch.float64)
    row[1] = 1.0
    row[3] = x_px
    row[4] = theta
    row[5] = 72
    row[6:] = x_px
    return row


def test_cost_by_hand() -> None:
    predictions = torch.stack([prediction(400), prediction(500), prediction(600, theta=0.6)])
    cost = assignment_cost(predictions, target(400)[None], W, H)
    # scores 1 - d / max(d) + 0.01 with d = (0, 100, 200) for rows and starts, (0, 0, 18 deg) for theta;
    # equal logits: sigmoid 0.5, cls cost = ln2 * 0.25 * 0.25 - ln2 * 0.75 * 0.25 = -ln2 / 8
    cls = -math.log(2) / 8
    expected = [
        -((1.01 * 1.01 * 1.01) ** 2) * 3 + cls,
        -((0.51 * 0.51 * 1.01) ** 2) * 3 + cls,
        -((0.01 * 0.01 * 0.01) ** 2) * 3 + cls,
    ]
    assert cost[:, 0].tolist() == pytest.approx(expected, rel=1e-6)


def test_confident_prior_is_cheaper() -> None:
    predictions = torch.stack([prediction(400, logits=(0.0, 3.0)), prediction(400, logits=(3.0, 0.0))])
    cost = assignment_cost(predictions, target(400)[None], W, H)
    assert cost[0, 0] < cost[1, 0]


def test_dynamic_k_from_line_iou() -> None:
    # Line IoUs with the GT at 400: 1, 28/32, 26/34, 24/36 (sum 3.31 -> k = 3); the far priors give 0
    xs = [406, 1000, 404, 400, 300, 402]
    predictions = torch.stack([prediction(x) for x in xs])
    prior_idx, gt_idx = dynamic_k_assign(predictions, target(400)[None], W, H)
    assert prior_idx.tolist() == [2, 3, 5]
    assert gt_idx.tolist() == [0, 0, 0]
    # a lone close prior: k = 1
    prior_idx, _ = dynamic_k_assign(torch.stack([prediction(x) for x in (406, 600, 200)]), target(400)[None])
    assert prior_idx.tolist() == [0]


def test_two_lanes_get_their_own_priors() -> None:
    predictions = torch.stack([prediction(x) for x in (101, 250, 399, 600, 701)])
    targets = torch.stack([target(100), target(400), target(700)])
    prior_idx, gt_idx = dynamic_k_assign(predictions, targets, W, H)
    assert prior_idx.tolist() == [0, 2, 4]
    assert gt_idx.tolist() == [0, 1, 2]


def official_matching(
    cost: torch.Tensor, ious: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """The official matching step, one GT and one prior at a time (our loop port), bug included:
    only column 0 of a prior matched several times is cleared before its cheapest GT is set.
    Returns the matrix of top-k choices, the matrix after conflict resolution, and the pairs."""
    num_priors, num_gt = cost.shape
    matrix = torch.zeros_like(cost)
    for gt in range(num_gt):
        column = ious[:, gt].clamp_min(0)
        k = max(1, int(column.topk(min(4, num_priors)).values.sum()))
        for prior in cost[:, gt].argsort(stable=True)[:k].tolist():
            matrix[prior, gt] = 1.0
    taken = matrix.clone()
    for prior in range(num_priors):
        if matrix[prior].sum() > 1:
            matrix[prior, 0] = 0.0
            matrix[prior, int(cost[prior].argmin())] = 1.0
    priors = [p for p in range(num_priors) if matrix[p].sum() > 0]
    return taken, matrix, priors, [int(matrix[p].argmax()) for p in priors]


def test_conflict_keeps_only_cheapest_gt() -> None:
    # k = 1 for every GT (no IoU); GT 0 takes prior 1, GTs 1 and 2 both take prior 0, cheaper for GT 2
    cost = torch.tensor([[0.0, -1.0, -2.0], [-5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ious = torch.zeros(3, 3)
    _, matrix, priors, gts = official_matching(cost, ious)
    assert matrix[0].tolist() == [0.0, 1.0, 1.0]  # the official double match
    assert (priors, gts) == ([0, 1], [1, 0])  # ... resolved by index, not by cost
    prior_idx, gt_idx = dynamic_k_match(cost, ious)
    assert prior_idx.tolist() == [0, 1]
    assert gt_idx.tolist() == [2, 0]


def test_conflict_ignores_gts_that_did_not_choose_the_prior() -> None:
    # prior 0 is cheapest for GT 0 overall, but GT 0 took prior 1: prior 0 stays with GT 2
    cost = torch.tensor([[-3.0, -1.0, -2.0], [-5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    prior_idx, gt_idx = dynamic_k_match(cost, torch.zeros(3, 3))
    assert gt_idx.tolist() == [2, 0]
    assert prior_idx.tolist() == [0, 1]


def test_matching_agrees_with_official_without_conflicts() -> None:
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        cost = torch.rand(30, 4, generator=generator)
        ious = torch.rand(30, 4, generator=generator) * 1.2 - 0.2
        taken, _, priors, gts = official_matching(cost, ious)
        prior_idx, gt_idx = dynamic_k_match(cost, ious)
        assert prior_idx.tolist() == priors
        for prior, gt, official_gt in zip(prior_idx.tolist(), gt_idx.tolist(), gts):
            chosen = taken[prior].nonzero().flatten()
            if len(chosen) == 1:
                assert gt == official_gt
            assert gt == chosen[cost[prior, chosen].argmin()]  # the cheapest of the GTs that took it


def test_no_targets_and_bad_input() -> None:
    predictions = torch.stack([prediction(400)])
    prior_idx, gt_idx = dynamic_k_assign(predictions, torch.zeros(0, 78, dtype=torch.float64))
    assert prior_idx.numel() == 0 and gt_idx.numel() == 0
    with pytest.raises(ValueError, match=r"\(P, 78\)"):
        dynamic_k_assign(predictions[:, :77], target(400)[None])
    with pytest.raises(ValueError, match=r"\(G, 78\)"):
        dynamic_k_assign(predictions, target(400))
    broken = predictions.clone()
    broken[0, 10] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        dynamic_k_assign(broken, target(400)[None])
