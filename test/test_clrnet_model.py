"""CLRNet network: output shapes per backbone, prior pooling, the refinement rule, ROIGather's zero-initialised
context, gradients into the priors, and ONNX export checked against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from refine_perception.models.clrnet import head as head_module
from refine_perception.models.clrnet.head import CLRHead
from refine_perception.models.clrnet.model import CLRNet, CLRNetOutput, CLRNetTrainOutput
from refine_perception.models.clrnet.priors import init_prior_params, prior_lines, prior_ys, sample_indices
from refine_perception.models.clrnet.roi_gather import ROIGather, pool_prior_features

FPN_SHAPES = ((40, 100), (20, 50), (10, 25))  # stride 8, 16, 32 of the 320x800 input, fine to coarse


def _fpn_maps(batch: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 64, h, w, generator=generator) for h, w in FPN_SHAPES]


@pytest.fixture(scope="module")
def resnet18_model() -> CLRNet:
    torch.manual_seed(0)
    return CLRNet("resnet18").eval()


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "dla34"])
def test_eval_output_shapes(backbone: str) -> None:
    model = CLRNet(backbone).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 320, 800))
    assert isinstance(out, CLRNetOutput)
    assert tuple(out.lanes.shape) == (1, 192, 78)
    assert tuple(out.types.shape) == (1, 192, 5)
    assert tuple(out.colors.shape) == (1, 192, 3)


def test_training_returns_every_stage_and_segmentation() -> None:
    model = CLRNet("resnet18").train()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 320, 800))
    assert isinstance(out, CLRNetTrainOutput)
    assert [tuple(s.shape) for s in out.stages] == [(1, 192, 78)] * 3
    assert tuple(out.seg.shape) == (1, 5, 320, 800)
    assert tuple(out.types.shape) == (1, 192, 5)


def test_gradient_reaches_prior_embedding_in_training() -> None:
    head = CLRHead().train()
    stages, types, colors = head(_fpn_maps(2))
    (sum(s.sum() for s in stages) + types.sum() + colors.sum()).backward()
    grad = head.prior_embeddings.weight.grad
    assert grad is not None
    assert torch.all(grad.abs().sum(dim=1) > 0)  # every prior's parameters receive a gradient


def test_bad_images_are_rejected(resnet18_model: CLRNet) -> None:
    with pytest.raises(ValueError, match="shape"):
        resnet18_model(torch.rand(1, 3, 288, 800))
    with pytest.raises(TypeError, match="dtype"):
        resnet18_model(torch.zeros(1, 3, 320, 800, dtype=torch.uint8))
    nan_image = torch.rand(1, 3, 320, 800)
    nan_image[0, 1, 5, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        resnet18_model(nan_image)


def test_prior_embedding_starts_at_official_priors() -> None:
    head = CLRHead()
    assert torch.equal(head.prior_embeddings.weight.detach(), init_prior_params())


def _conv9_bn(cin: int, cout: int) -> int:
    """Bias-free 9x1 conv followed by BatchNorm."""
    return cin * cout * 9 + 2 * cout


def _linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def test_head_parameter_count() -> None:
    """Hand count of the official head's layers plus the type and colour classifiers."""
    roi_gather = (
        3 * _conv9_bn(64, 48)
        + sum(_conv9_bn(48 * (t + 1), 64) for t in range(3))
        + _linear(36 * 64, 64) + 2 * 64  # fc + LayerNorm
        + 64 * 64 + 2 * 64  # key: 1x1 conv + BatchNorm
        + 2 * 192 + _linear(64, 64) + 2 * 192  # per-prior query, value conv, per-prior W
    )
    expected = (
        192 * 3  # prior embedding
        + roi_gather
        + 2 * 2 * _linear(64, 64)  # cls and reg MLPs
        + _linear(64, 2) + _linear(64, 76) + _linear(64, 5) + _linear(64, 3)
        + _linear(3 * 64, 5)  # segmentation 1x1 conv
    )
    assert expected == 430_075
    assert sum(p.numel() for p in CLRHead().parameters()) == expected


def test_pooling_reads_features_at_prior_points() -> None:
    """Ramps equal to the normalised column and row give the sampling coordinates back; off-map points read 0."""
    h, w = 10, 25
    ramp_x = torch.linspace(0, 1, w).expand(h, w)
    ramp_y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    feature = torch.stack([ramp_x, ramp_y])[None].repeat(2, 1, 1, 1)  # (2, 2, 10, 25)
    ys = torch.tensor([0.0, 0.25, 0.6, 1.0])
    xs = torch.tensor([[[0.0, 0.3, 0.77, 1.0], [0.5, 0.5, -0.5, 1.5]]]).repeat(2, 1, 1)  # (2 images, 2 priors, 4)

    pooled = pool_prior_features(feature, xs, ys)

    assert tuple(pooled.shape) == (4, 2, 4, 1)
    expected_x = torch.tensor([[0.0, 0.3, 0.77, 1.0], [0.5, 0.5, 0.0, 0.0]]).repeat(2, 1)
    expected_y = torch.stack([ys, torch.tensor([0.0, 0.25, 0.0, 0.0])]).repeat(2, 1)
    torch.testing.assert_close(pooled[:, 0, :, 0], expected_x, atol=1e-6, rtol=0)
    torch.testing.assert_close(pooled[:, 1, :, 0], expected_y, atol=1e-6, rtol=0)
    assert torch.equal(pool_prior_features(feature, xs[0], ys), pooled)  # priors shared by the batch


def test_exported_pooling_gathers_the_numbers_grid_sample_gives() -> None:
    """The ONNX graph samples with gathers (onnxruntime's GridSample is slow): same values and gradients,
    off-map and partly-off-map points included."""
    from refine_perception.models.clrnet.roi_gather import _gather_bilinear

    torch.manual_seed(0)
    feature = torch.randn(2, 8, 10, 25, requires_grad=True)
    xs = torch.rand(2, 6, 9) * 1.4 - 0.2
    ys = torch.linspace(-0.05, 1.05, 9)
    grid = torch.stack([xs, ys.expand_as(xs)], dim=-1) * 2.0 - 1.0
    want = torch.nn.functional.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    got = _gather_bilinear(feature, xs, ys)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    (want_grad,) = torch.autograd.grad(want.square().sum(), feature)
    (got_grad,) = torch.autograd.grad(got.square().sum(), feature)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-4, rtol=0)


def test_pooling_rows_run_top_down_over_the_36_sample_rows() -> None:
    head = CLRHead()
    rows = head.sample_rows
    assert rows.tolist() == sorted(sample_indices().tolist(), reverse=True)
    assert rows[0] == 71 and rows[-1] == 0
    torch.testing.assert_close(head.sample_ys, prior_ys()[rows])
    assert head.sample_ys[0] == 0.0 and head.sample_ys[-1] == 1.0


def test_each_stage_refines_the_previous_one() -> None:
    """Stage outputs follow the official rule, checked against the raw cls/reg outputs captured by hooks."""
    head = CLRHead().eval()
    raw: dict[str, list[torch.Tensor]] = {"cls": [], "reg": []}
    head.cls_layers.register_forward_hook(lambda _m, _i, out: raw["cls"].append(out))
    head.reg_layers.register_forward_hook(lambda _m, _i, out: raw["reg"].append(out))
    with torch.no_grad():
        # larger regression outputs than at init, so a wrong rule cannot hide below the tolerance
        head.reg_layers.weight.mul_(30.0)
        stages, _, _ = head(_fpn_maps(2))

    assert len(stages) == len(raw["reg"]) == 3
    params = init_prior_params().expand(2, -1, -1)
    for stage, cls_logits, reg in zip(stages, raw["cls"], raw["reg"]):
        refined = params + reg[..., :3]
        assert torch.equal(stage[..., :2], cls_logits)
        torch.testing.assert_close(stage[..., 2:5], refined)
        assert torch.equal(stage[..., 5], reg[..., 3])
        torch.testing.assert_close(stage[..., 6:], prior_lines(refined) + reg[..., 4:])
        assert not torch.allclose(stage[..., 2:5], params)
        params = stage[..., 2:5]


def test_lane_pooling_reads_later_stages_along_the_previous_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    """pooling="lane" changes where stages 2 and 3 sample (the previous lane with its offsets), not the
    parameters nor the refinement rule: stage 1 agrees with "line" and the pooled points are captured."""
    maps = _fpn_maps(2)
    sampled: list[torch.Tensor] = []

    def spy(feature: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        sampled.append(xs)
        return pool_prior_features(feature, xs, ys)

    monkeypatch.setattr(head_module, "pool_prior_features", spy)
    outputs: dict[str, list[torch.Tensor]] = {}
    points: dict[str, list[torch.Tensor]] = {}
    for pooling in ("line", "lane"):
        torch.manual_seed(0)
        head = CLRHead(pooling=pooling).eval()
        with torch.no_grad():
            head.reg_layers.weight.mul_(30.0)  # visible offsets
            outputs[pooling] = head(maps)[0]
        points[pooling], sampled[:] = list(sampled), []
    line, lane = outputs["line"], outputs["lane"]
    assert torch.equal(line[0], lane[0]) and not torch.allclose(line[2], lane[2])
    rows = head.sample_rows
    for stage in (1, 2):
        torch.testing.assert_close(points["lane"][stage], lane[stage - 1][..., 6:][..., rows])
        torch.testing.assert_close(points["line"][stage], prior_lines(line[stage - 1][..., 2:5])[..., rows])
    with pytest.raises(ValueError, match="pooling"):
        CLRHead(pooling="curve")  # type: ignore[arg-type]


def test_roi_gather_context_starts_at_zero() -> None:
    torch.manual_seed(0)
    gather = ROIGather(channels=64, num_priors=192, sample_points=36, hidden_dim=64, stages=3).eval()
    pooled = [torch.randn(2 * 192, 64, 36, 1) for _ in range(2)]
    feature = torch.randn(2, 64, 20, 50)
    with torch.no_grad():
        projected = [gather.project(p, stage) for stage, p in enumerate(pooled)]
        local = gather.local_features(projected, stage=1)
        assert tuple(local.shape) == (2, 192, 64)
        assert torch.equal(gather(projected, feature, stage=1), local)
        gather.W.weight.fill_(1.0)
        assert not torch.allclose(gather(projected, feature, stage=1), local)


def test_roi_gather_row_convolution_equals_conv2d() -> None:
    torch.manual_seed(0)
    gather = ROIGather(channels=64, num_priors=192, sample_points=36, hidden_dim=64, stages=3).eval()
    pooled = torch.randn(2 * 192, 64, 36, 1)
    layer = gather.convs[0]
    expected = torch.relu(layer.bn(layer.conv(pooled)))
    torch.testing.assert_close(gather.project(pooled, 0), expected, rtol=1e-5, atol=1e-5)


def _onnx_outputs(path: Path, images: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})


@pytest.mark.parametrize("dynamic_batch", [False, True])
def test_onnx_export_matches_torch(resnet18_model: CLRNet, tmp_path: Path, dynamic_batch: bool) -> None:
    path = tmp_path / "clrnet.onnx"
    names = ["lanes", "types", "colors"]
    axes = {name: {0: "batch"} for name in ["images", *names]} if dynamic_batch else None
    torch.onnx.export(resnet18_model, (torch.rand(1, 3, 320, 800),), str(path), opset_version=17,
                      input_names=["images"], output_names=names, dynamic_axes=axes, dynamo=False)

    assert "ScatterND" not in {node.op_type for node in onnx.load(str(path)).graph.node}

    images = torch.rand(2 if dynamic_batch else 1, 3, 320, 800, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = resnet18_model(images)
    for got, want in zip(_onnx_outputs(path, images), expected):
        assert got.shape == tuple(want.shape)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


def test_lighter_head_and_smaller_input(tmp_path: Path) -> None:
    from refine_perception.models.clrnet.weights import load_lane_model, save_lane_model

    torch.manual_seed(0)
    model = CLRNet("resnet18", 5, (64, 160), num_priors=96, sample_points=18).eval()
    images = torch.rand(2, 3, 64, 160)
    with torch.no_grad():
        out = model(images)
    assert tuple(out.lanes.shape) == (2, 96, 78) and tuple(out.types.shape) == (2, 96, 5)
    assert model.head.roi_gather.fc.in_features == 18 * 64
    save_lane_model(tmp_path / "lite.safetensors", model, "resnet18", {"cut_height": 270})
    loaded, meta = load_lane_model(tmp_path / "lite.safetensors")
    assert (meta["num_priors"], meta["sample_points"], meta["pooling"]) == (96, 18, "line")
    with torch.no_grad():
        assert torch.equal(loaded(images).lanes, out.lanes)
    lane = CLRNet("resnet18", 5, (64, 160), num_priors=96, sample_points=18, pooling="lane").eval()
    lane.load_state_dict(model.state_dict())
    save_lane_model(tmp_path / "lane.safetensors", lane, "resnet18", {"cut_height": 270})
    loaded, meta = load_lane_model(tmp_path / "lane.safetensors")
    assert meta["pooling"] == "lane" and loaded.head.pooling == "lane"
    with torch.no_grad():
        assert torch.equal(loaded(images).lanes, lane(images).lanes)
        assert not torch.equal(loaded(images).lanes, out.lanes)
    onnx_path = tmp_path / "lane.onnx"
    torch.onnx.export(lane, (images,), str(onnx_path), opset_version=17, input_names=["images"],
                      output_names=["lanes", "types", "colors"], dynamo=False)
    np.testing.assert_allclose(_onnx_outputs(onnx_path, images)[0], lane(images).lanes.detach().numpy(),
                               atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="input_size"):
        CLRNet("resnet18", 5, (70, 160))
    with pytest.raises(ValueError, match="multiple of 32 for dla34"):
        CLRNet("dla34", 5, (160, 400))
