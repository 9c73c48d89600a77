"""CLRNet training loss: the focal loss by hand, totals of synthetic cases where a prior equals its GT lane,
the start-row shift of the length target, images without lanes, input errors, and a few optimizer steps
of a real CLRNet."""

from __future__ import annotations

import math

import pytest
import torch

from refine_perception.models.clrnet.lane_iou import lane_iou_loss
from refine_perception.models.clrnet.line_iou import line_iou_loss
from refine_perception.models.clrnet.loss import (
    ABSENT_X,
    LOSS_PRESETS,
    CLRNetLoss,
    LaneTargets,
    focal_loss,
)
from refine_perception.models.clrnet.model import CLRNet, CLRNetTrainOutput
from refine_perception.models.clrnet.priors import prior_lines

W, H = 800, 320
LN3 = math.log(3.0)
# every prior's focal term when the right class has probability 3/4: 0.25 * (1/4)^2 * ln(4/3); x192 = 3 ln(4/3)
ALL_PRIORS_AT_THREE_QUARTERS = 3.0 * math.log(4.0 / 3.0)


def line(start_row: int, start_x_px: float, theta: float) -> torch.Tensor:
    """Normalised xs (72,) of a straight line starting at start_row."""
    params = torch.tensor([start_row / 71, start_x_px / (W - 1), theta], dtype=torch.float64)
    return prior_lines(params)


def gt_lane(start_x_px: float, theta: float, length: int) -> torch.Tensor:
    """A GT lane in the label layout, from the bottom row over `length` rows."""
    row = torch.zeros(78, dtype=torch.float64)
    row[1] = 1.0
    row[3] = start_x_px
    row[4] = theta
    row[5] = length
    xs = line(0, start_x_px, theta) * (W - 1)
    row[6:] = torch.where(torch.arange(72) < length, xs, torch.full_like(xs, ABSENT_X))
    return row


def prediction_of(lane: torch.Tensor, start_row: int = 0) -> torch.Tensor:
    """A head output (normalised) on the GT lane's line, confident it is a lane (p = 3/4), starting at
    start_row and ending where the GT ends."""
    row = torch.zeros(78, dtype=torch.float64)
    row[1] = LN3
    row[2] = start_row / 71
    row[3] = lane[3] / (W - 1)
    row[4] = lane[4]
    row[5] = (lane[5] - start_row) / 71
    row[6:] = line(0, float(lane[3]), float(lane[4]))
    return row


def background_priors(logits: tuple[float, float] = (LN3, 0.0)) -> torch.Tensor:
    """192 head outputs far left of the image, background with the given logits."""
    rows = torch.zeros(192, 78, dtype=torch.float64)
    rows[:, 0], rows[:, 1] = logits
    rows[:, 3] = -1000 / (W - 1)
    rows[:, 4] = 0.2
    rows[:, 5] = 0.5
    rows[:, 6:] = -1000 / (W - 1)
    return rows


def train_output(stage: torch.Tensor, types: torch.Tensor | None = None) -> CLRNetTrainOutput:
    """Three identical stages (B, 192, 78), uniform segmentation and colour logits."""
    batch = stage.shape[0]
    if types is None:
        types = torch.zeros(batch, 192, 5, dtype=torch.float64)
    seg = torch.zeros(batch, 5, H, W, dtype=torch.float64, requires_grad=True)
    return CLRNetTrainOutput((stage, stage, stage), seg, types, torch.zeros(batch, 192, 3, dtype=torch.float64))


def seg_labels() -> torch.Tensor:
    labels = torch.zeros(H, W, dtype=torch.long)
    labels[:, 300:320] = 1
    labels[:10] = 255
    return labels


def targets_of(lanes: list[torch.Tensor], types: list[int], colors: list[int]) -> LaneTargets:
    stacked = torch.stack(lanes) if lanes else torch.zeros(0, 78, dtype=torch.float64)
    return LaneTargets(stacked, torch.tensor(types, dtype=torch.long), torch.tensor(colors, dtype=torch.long),
                       seg_labels())


LANES = [gt_lane(300.0, 0.45, 60), gt_lane(600.0, 0.6, 50)]


def exact_case(num_lanes: int) -> tuple[CLRNetTrainOutput, LaneTargets]:
    """Priors 0.. lie exactly on the GT lanes, every other prior is far-away background. The type logits
    of prior 0 put probability 1/2 on its lane's type (2)."""
    stage = background_priors()
    for index in range(num_lanes):
        stage[index] = prediction_of(LANES[index])
    types = torch.zeros(1, 192, 5, dtype=torch.float64)
    types[0, 0, 2] = math.log(4.0)
    return train_output(stage[None], types), targets_of(LANES[:num_lanes], [2, 1][:num_lanes], [1, 2][:num_lanes])


def test_focal_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]])  # softmax (1/4, 3/4)
    loss = focal_loss(logits, torch.tensor([1, 0]))
    lane = 0.25 * 0.25**2 * math.log(4 / 3)  # -alpha (1 - 3/4)^2 ln(3/4)
    background = 0.25 * 0.75**2 * math.log(4)  # the same alpha for the other class, not 1 - alpha
    assert loss.tolist() == pytest.approx([lane, background], rel=1e-6)


@pytest.mark.parametrize("num_lanes", [1, 2])
def test_exact_priors_give_zero_regression_and_known_total(num_lanes: int) -> None:
    output, target = exact_case(num_lanes)
    total, parts = CLRNetLoss()(output, [target])
    assert parts["xytl"].item() == pytest.approx(0.0, abs=1e-9)
    assert parts["iou"].item() == pytest.approx(0.0, abs=1e-9)
    # 192 priors at p = 3/4 of the right class, divided by the number of lanes
    assert parts["cls"].item() == pytest.approx(ALL_PRIORS_AT_THREE_QUARTERS / num_lanes, rel=1e-9)
    assert parts["seg"].item() == pytest.approx(math.log(5), rel=1e-9)  # uniform over 5 classes
    # the type term reads only the matched priors: prior 0 gives ln 2, prior 1 (uniform) ln 5
    assert parts["type"].item() == pytest.approx([math.log(2), (math.log(2) + math.log(5)) / 2][num_lanes - 1])
    assert parts["color"].item() == pytest.approx(LN3)
    expected = 2.0 * parts["cls"] + parts["seg"] + parts["type"] + parts["color"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-9)


def test_lane_iou_replaces_line_iou_on_the_matched_pairs() -> None:
    stage = background_priors()
    stage[0] = prediction_of(LANES[0])
    stage[0, 6:] += 4.0 / (W - 1)  # 4 px to the right of the GT on every row
    output, target = train_output(stage[None]), targets_of(LANES[:1], [0], [0])
    _, line = CLRNetLoss()(output, [target])
    _, lane = CLRNetLoss(iou="lane")(output, [target])
    pred, gt = stage[:1, 6:] * (W - 1), target.lanes[:, 6:]
    assert line["iou"].item() == pytest.approx(line_iou_loss(pred, gt, W, 15.0).item(), rel=1e-9)
    assert lane["iou"].item() == pytest.approx(lane_iou_loss(pred, gt, W).item(), rel=1e-9)
    assert lane["iou"].item() > line["iou"].item() > 0  # the narrower band judges the same offset harder
    assert {k: v for k, v in lane.items() if k != "iou"} == {k: v for k, v in line.items() if k != "iou"}
    with pytest.raises(ValueError, match="unknown IoU loss"):
        CLRNetLoss(iou="box")  # type: ignore[arg-type]


def test_length_target_follows_the_start_row() -> None:
    """A prediction starting 2 rows higher and 2 rows shorter ends where the GT ends: only the start
    row differs, by 2 rows, so smooth-L1 gives (2 - 0.5) / 4 fields."""
    stage = background_priors()
    stage[0] = prediction_of(LANES[0], start_row=2)
    output = train_output(stage[None])
    _, parts = CLRNetLoss()(output, [targets_of(LANES[:1], [0], [0])])
    assert parts["xytl"].item() == pytest.approx(1.5 / 4, rel=1e-6)
    assert parts["iou"].item() == pytest.approx(0.0, abs=1e-9)


def test_image_without_lanes_is_all_background_and_not_divided() -> None:
    output = train_output(background_priors(logits=(0.0, 0.0))[None])
    total, parts = CLRNetLoss()(output, [targets_of([], [], [])])
    # 192 priors at p = 1/2: 192 * 0.25 * (1/2)^2 * ln 2 = 12 ln 2
    assert parts["cls"].item() == pytest.approx(12 * math.log(2), rel=1e-9)
    for name in ("xytl", "iou", "type", "color"):
        assert parts[name].item() == 0.0
    assert total.item() == pytest.approx(24 * math.log(2) + math.log(5), rel=1e-9)


def test_batch_averages_over_images_and_skips_unlabelled_attributes() -> None:
    exact, target = exact_case(1)
    empty_stage = background_priors(logits=(0.0, 0.0))
    stage = torch.stack([exact.stages[0][0], empty_stage])
    types = torch.cat([exact.types, torch.zeros(1, 192, 5, dtype=torch.float64)])
    unlabelled = LaneTargets(target.lanes, torch.tensor([-1]), target.colors, target.seg)
    _, parts = CLRNetLoss()(train_output(stage, types), [unlabelled, targets_of([], [], [])])
    assert parts["cls"].item() == pytest.approx((ALL_PRIORS_AT_THREE_QUARTERS + 12 * math.log(2)) / 2, rel=1e-9)
    assert parts["xytl"].item() == pytest.approx(0.0, abs=1e-9)
    assert parts["type"].item() == 0.0  # the only matched lane has no type label
    assert parts["color"].item() == pytest.approx(LN3)


def test_presets_and_weights() -> None:
    output, target = exact_case(1)
    _, parts = CLRNetLoss()(output, [target])
    total, _ = CLRNetLoss.from_preset("tusimple", type_weight=0.5, color_weight=0.0)(output, [target])
    assert total.item() == pytest.approx((6.0 * parts["cls"] + parts["seg"] + 0.5 * parts["type"]).item())
    assert LOSS_PRESETS["culane"] == {"cls_weight": 2.0, "xyt_weight": 0.2, "iou_weight": 2.0, "seg_weight": 1.0}
    with pytest.raises(ValueError, match="preset"):
        CLRNetLoss.from_preset("llamas")


def test_bad_targets_raise_clear_errors() -> None:
    lanes = torch.stack(LANES)
    with pytest.raises(ValueError, match="lanes must be a float"):
        LaneTargets(lanes[:, :70], torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), seg_labels())
    with pytest.raises(ValueError, match="NaN"):
        LaneTargets(lanes * math.nan, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), seg_labels())
    with pytest.raises(ValueError, match="types must lie"):
        LaneTargets(lanes, torch.tensor([0, 5]), torch.zeros(2, dtype=torch.long), seg_labels())
    with pytest.raises(ValueError, match="colors must be an integer"):
        LaneTargets(lanes, torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long), seg_labels())
    output, target = exact_case(1)
    with pytest.raises(ValueError, match="2 targets for a batch of 1"):
        CLRNetLoss()(output, [target, target])
    small = LaneTargets(target.lanes, target.types, target.colors, torch.zeros(10, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        CLRNetLoss()(output, [small])
    bad_seg = LaneTargets(target.lanes, target.types, target.colors, torch.full((H, W), 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 5\) or be 255"):
        CLRNetLoss()(output, [bad_seg])


@pytest.mark.slow
def test_loss_decreases_when_training_a_real_clrnet() -> None:
    """Two Adam steps of a resnet18 CLRNet's neck and head on one image lower the loss, with finite
    gradients. The backbone is frozen and run once only to keep the test within seconds on a CPU; the
    loss reaches it through the same neck and head."""
    torch.manual_seed(0)
    model = CLRNet("resnet18").train()
    model.backbone.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    criterion = CLRNetLoss.from_preset("culane")
    with torch.no_grad():
        backbone_maps = model.backbone(torch.rand(1, 3, H, W))
    target = LaneTargets(torch.stack(LANES).float(), torch.tensor([1, 2]), torch.tensor([1, 2]), seg_labels())

    def loss() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        maps = model.neck(backbone_maps)
        stages, types, colors = model.head(maps)
        return criterion(CLRNetTrainOutput(tuple(stages), model.head.segment(maps, (H, W)), types, colors), [target])

    totals = []
    for _ in range(2):
        optimizer.zero_grad()
        total, parts = loss()
        total.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
        assert all(bool(torch.isfinite(value)) for value in parts.values())
        optimizer.step()
        totals.append(total.item())
    with torch.no_grad():
        totals.append(loss()[0].item())
    assert totals[2] < totals[1] < totals[0]
