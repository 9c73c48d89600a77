"""Backbones and FPN for CLRNet: shapes, parameter counts, checkpoint names and the ImageNet loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from refine_perception.models.backbones import build_backbone
from refine_perception.models.backbones.pretrained import PretrainedWeightsError, load_imagenet_weights
from refine_perception.models.fpn import FPN


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout


def _bn(c: int) -> int:
    return 2 * c


def _block(cin: int, cout: int) -> int:
    """BasicBlock: two 3x3 convs without bias, each followed by BN (shortcut counted separately)."""
    return _conv(3, cin, cout) + _bn(cout) + _conv(3, cout, cout) + _bn(cout)


def _projection(cin: int, cout: int) -> int:
    return _conv(1, cin, cout) + _bn(cout)


FC_1000 = 512 * 1000 + 1000  # the ImageNet classifier our backbones leave out
Models = dict[str, nn.Module]
State = dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def models() -> Models:
    """One instance per backbone for the tests that do not change weights (building them is the slow part)."""
    return {name: build_backbone(name) for name in ("resnet18", "resnet34", "dla34")}


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "dla34"])
def test_feature_shapes_for_clrnet_input(name: str, models: Models) -> None:
    backbone = models[name].eval()
    fpn = FPN(backbone.out_channels, 64).eval()
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 320, 800))
        pyramid = fpn(features)
    assert backbone.out_channels == (128, 256, 512)
    assert [tuple(f.shape) for f in features] == [(1, 128, 40, 100), (1, 256, 20, 50), (1, 512, 10, 25)]
    assert [tuple(p.shape) for p in pyramid] == [(1, 64, 40, 100), (1, 64, 20, 50), (1, 64, 10, 25)]


def test_unknown_backbone_is_named() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        build_backbone("resnet50")


def test_resnet_parameter_counts(models: Models) -> None:
    # stem: 7x7 conv 3->64 + BN = 9,408 + 128 = 9,536
    stem = _conv(7, 3, 64) + _bn(64)
    # first block of stages 2-4 changes width and stride and needs a 1x1 projection shortcut:
    # layer2.0 = 73,728 + 256 + 147,456 + 256 + 8,192 + 256 = 230,144; layer3.0 = 919,040; layer4.0 = 3,673,088
    first = {c: _block(c // 2, c) + _projection(c // 2, c) for c in (128, 256, 512)}
    # resnet18, blocks [2,2,2,2]: 9,536 + 2*73,984 + (230,144 + 295,424) + (919,040 + 1,180,672)
    #   + (3,673,088 + 4,720,640) = 11,176,512 = 11,689,512 (torchvision, with fc) - 513,000
    r18 = stem + 2 * _block(64, 64) + sum(first[c] + _block(c, c) for c in (128, 256, 512))
    # resnet34, blocks [3,4,6,3]: 9,536 + 221,952 + 1,116,416 + 6,822,400 + 13,114,368 = 21,284,672
    r34 = (stem + 3 * _block(64, 64) + first[128] + 3 * _block(128, 128)
           + first[256] + 5 * _block(256, 256) + first[512] + 2 * _block(512, 512))
    assert r18 == 11_176_512 == 11_689_512 - FC_1000
    assert r34 == 21_284_672 == 21_797_672 - FC_1000
    assert _param_count(models["resnet18"]) == r18
    assert _param_count(models["resnet34"]) == r34


def test_dla34_parameter_count(models: Models) -> None:
    # A one-level tree (in -> out) = two blocks + Root 1x1 conv over its children + projection if in != out.
    def tree1(cin: int, cout: int, root_in: int) -> int:
        return _block(cin, cout) + _block(cout, cout) + _projection(root_in, cout) + (
            _projection(cin, cout) if cin != cout else 0)

    base = _conv(7, 3, 16) + _bn(16)                          # 2,384
    level0 = _conv(3, 16, 16) + _bn(16)                       # 2,336
    level1 = _conv(3, 16, 32) + _bn(32)                       # 4,672
    level2 = tree1(32, 64, 2 * 64)                            # 140,032
    # Two-level trees: the inner second tree's Root also takes the pooled input and the first subtree.
    level3 = tree1(64, 128, 2 * 128) + tree1(128, 128, 2 * 128 + 64 + 128)     # 1,207,040
    level4 = tree1(128, 256, 2 * 256) + tree1(256, 256, 2 * 256 + 128 + 256)  # 4,822,528
    level5 = tree1(256, 512, 2 * 512 + 256)                   # 9,050,112
    expected = base + level0 + level1 + level2 + level3 + level4 + level5
    # DLA-34 with fc has 15,742,104 parameters (imgclsmob / timm); the official file holds 41,728 more
    # in the unused level3/level4 projections (64*128 + 256 and 128*256 + 512).
    assert expected == 15_742_104 - FC_1000 == 15_229_104
    assert _param_count(models["dla34"]) == expected


def test_fpn_parameter_count() -> None:
    # laterals (1x1, bias): 128*64+64 + 256*64+64 + 512*64+64 = 57,536; outputs 3 * (9*64*64 + 64) = 110,784
    assert _param_count(FPN((128, 256, 512), 64)) == 57_536 + 110_784


def test_fpn_adds_upsampled_coarser_levels() -> None:
    fpn = FPN((1, 1, 1), 1)
    with torch.no_grad():
        for lateral, output in zip(fpn.lateral_convs, fpn.fpn_convs):
            lateral.conv.weight.fill_(1.0)
            lateral.conv.bias.zero_()
            output.conv.weight.zero_()
            output.conv.weight[0, 0, 1, 1] = 1.0  # identity 3x3
            output.conv.bias.fill_(0.5)
        c5 = torch.tensor([[[[1.0]]]])
        c4 = torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]])
        c3 = torch.full((1, 1, 4, 4), 100.0)
        p3, p4, p5 = fpn([c3, c4, c5])
    assert torch.equal(p5, c5 + 0.5)
    assert torch.equal(p4, c4 + 1.0 + 0.5)
    # each P4 value (c4 + 1) spreads over a 2x2 block of the stride-8 map
    expected_p3 = 100.0 + torch.tensor([[11.0, 11, 21, 21], [11, 11, 21, 21], [31, 31, 41, 41], [31, 31, 41, 41]]) + 0.5
    assert torch.equal(p3[0, 0], expected_p3)


def test_fpn_rejects_wrong_number_of_maps() -> None:
    with pytest.raises(ValueError, match="expects 3 feature maps, got 2"):
        FPN()([torch.zeros(1, 128, 4, 4), torch.zeros(1, 256, 2, 2)])


def test_checkpoint_key_names(models: Models) -> None:
    resnet = set(models["resnet18"].state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.bias", "layer4.1.bn2.weight", "layer4.1.bn2.num_batches_tracked"} <= resnet
    assert "layer1.0.downsample.0.weight" not in resnet and not any(k.startswith("fc.") for k in resnet)
    assert "layer3.5.conv2.weight" in models["resnet34"].state_dict()
    dla = set(models["dla34"].state_dict())
    assert {"base_layer.0.weight", "base_layer.1.weight", "level0.0.weight", "level1.1.running_mean",
            "level2.tree1.conv1.weight", "level2.root.conv.weight", "level2.project.0.weight",
            "level3.tree1.tree1.bn2.bias", "level3.tree1.project.1.weight", "level3.tree2.root.conv.weight",
            "level4.tree2.tree2.conv2.weight", "level5.root.bn.running_var", "level5.project.0.weight"} <= dla
    assert "level3.project.0.weight" not in dla and "level3.root.conv.weight" not in dla


def _official_checkpoint(model: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The model's tensors as the released ImageNet files hold them: with the classifier and, for
    DLA-34, the unused level3/level4 projections."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.randn(1000, 512) if name.startswith("resnet") else torch.randn(1000, 512, 1, 1)
    state["fc.bias"] = torch.randn(1000)
    if name == "dla34":
        for level, cin, cout in (("level3", 64, 128), ("level4", 128, 256)):
            state[f"{level}.project.0.weight"] = torch.randn(cout, cin, 1, 1)
            for part in ("weight", "bias", "running_mean", "running_var"):
                state[f"{level}.project.1.{part}"] = torch.rand(cout)
    return state


def _randomised(model: nn.Module) -> nn.Module:
    """Fill BN statistics too, so the comparison also covers buffers."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("name", ["resnet18", "dla34"])
def test_imagenet_weights_round_trip(name: str, tmp_path: Path) -> None:
    state = _official_checkpoint(_randomised(build_backbone(name)), name)
    pth = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 90}, pth)
    st = tmp_path / "plain.safetensors"
    safetensors.torch.save_file(state, str(st))
    for path in (pth, st):
        model = build_backbone(name)
        report = load_imagenet_weights(model, path)
        loaded = model.state_dict()
        assert report.loaded == len(state) - len(report.ignored)
        assert all(k.startswith(("fc.", "level3.project.", "level4.project.")) for k in report.ignored)
        assert len(report.ignored) == (2 if name == "resnet18" else 12)
        assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded)


@pytest.fixture(scope="module")
def resnet18_state(models: Models) -> State:
    return _official_checkpoint(models["resnet18"], "resnet18")


def test_shape_mismatch_names_key(resnet18_state: State, tmp_path: Path, models: Models) -> None:
    resnet18_state = dict(resnet18_state, **{"layer3.0.conv2.weight": torch.zeros(256, 128, 3, 3)})
    path = tmp_path / "bad.pt"
    torch.save(resnet18_state, path)
    with pytest.raises(PretrainedWeightsError, match=r"layer3\.0\.conv2\.weight has shape \(256, 128, 3, 3\)"):
        load_imagenet_weights(models["resnet18"], path)


def test_missing_key_is_named(resnet18_state: State, tmp_path: Path, models: Models) -> None:
    path = tmp_path / "missing.safetensors"
    safetensors.torch.save_file({k: v for k, v in resnet18_state.items() if k != "layer2.1.bn1.bias"}, str(path))
    with pytest.raises(PretrainedWeightsError, match=r"missing keys \[layer2\.1\.bn1\.bias\]"):
        load_imagenet_weights(models["resnet18"], path)


def test_wrong_architecture_is_refused(tmp_path: Path, models: Models) -> None:
    """A ResNet-34 file has every ResNet-18 key with the right shape; only the extra keys give it away."""
    path = tmp_path / "r34.pth"
    torch.save(models["resnet34"].state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=r"unexpected keys \[layer1\.2\.bn1\.bias"):
        load_imagenet_weights(models["resnet18"], path)


def test_non_finite_weights_are_refused(resnet18_state: State, tmp_path: Path, models: Models) -> None:
    bad = dict(resnet18_state)
    bad["layer1.0.bn1.running_var"] = torch.full((64,), float("nan"))
    path = tmp_path / "nan.pth"
    torch.save(bad, path)
    with pytest.raises(PretrainedWeightsError, match=r"layer1\.0\.bn1\.running_var contains NaN"):
        load_imagenet_weights(models["resnet18"], path)


@dataclass
class _Payload:
    """Any class outside torch's allow-list; unpickling it could run arbitrary code."""

    note: str


def test_pickled_objects_are_refused(tmp_path: Path, models: Models) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _Payload("boom")}, path)
    with pytest.raises(PretrainedWeightsError, match="cannot read checkpoint"):
        load_imagenet_weights(models["resnet18"], path)


@pytest.mark.parametrize(("filename", "content", "message"), [
    ("weights.bin", b"", "unsupported checkpoint type '.bin'"),
    ("truncated.safetensors", b"\x10\x00\x00", "cannot read checkpoint"),
    ("garbage.pth", b"not a checkpoint", "cannot read checkpoint"),
])
def test_unreadable_files(filename: str, content: bytes, message: str, tmp_path: Path, models: Models) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(PretrainedWeightsError, match=message):
        load_imagenet_weights(models["resnet18"], path)


def test_non_tensor_entry_is_named(tmp_path: Path, models: Models) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"model": {"conv1.weight": [1.0, 2.0]}}, path)
    with pytest.raises(PretrainedWeightsError, match="entry 'conv1.weight' is list, not a tensor"):
        load_imagenet_weights(models["resnet18"], path)
