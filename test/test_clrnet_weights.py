"""CLRNet model files: the safetensors + json pair round-trips, the fp16 export stays close to fp32, and
every kind of damaged or foreign file is refused with ModelFileError."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import safetensors
import safetensors.torch
import torch

from refine_perception.models.clrnet.model import CLRNet, CLRNetOutput
from refine_perception.models.clrnet.weights import ModelFileError, load_lane_model, save_lane_model
from refine_perception.training.export import export_default

SIZE = (64, 160)
INFO = {"cut_height": 270, "ori_width": 1640, "ori_height": 590, "data": "unit test"}
# fp16 keeps 11 significant bits (relative rounding 2**-11 ~ 5e-4 per weight); through the untrained
# network the largest change measured on random inputs is ~1e-3 of the normalised outputs (~0.8 px of
# an 800-wide image). 5e-3 (4 px, well under the 15 px Line-IoU half-width) leaves a 5x margin.
FP16_ATOL = 5e-3


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, torch.Tensor, CLRNetOutput]:
    """An fp32 model file, its metadata, an input and the original model's output on it."""
    torch.manual_seed(0)
    model = CLRNet("resnet18", 5, SIZE).eval()
    path = tmp_path_factory.mktemp("weights") / "lanes.safetensors"
    metadata = save_lane_model(path, model, "resnet18", INFO)
    images = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(images)
    return path, metadata, images, reference


def copy_model(source: Path, folder: Path, with_json: bool = True) -> Path:
    target = folder / source.name
    shutil.copyfile(source, target)
    if with_json:
        shutil.copyfile(source.with_suffix(".json"), target.with_suffix(".json"))
    return target


def header_of(path: Path) -> dict[str, str]:
    with safetensors.safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


def test_round_trip_gives_the_same_outputs(saved: tuple) -> None:
    path, _, images, reference = saved
    model, metadata = load_lane_model(path)
    assert not model.training and model.input_size == SIZE
    with torch.no_grad():
        output = model(images)
    for name in ("lanes", "types", "colors"):
        assert torch.equal(getattr(output, name), getattr(reference, name)), name
    assert metadata["data"] == "unit test" and metadata["backbone"] == "resnet18"


def test_json_describes_the_file(saved: tuple) -> None:
    path, metadata, _, _ = saved
    stored = json.loads(path.with_suffix(".json").read_text())
    assert stored == metadata
    assert stored["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stored["bytes"] == path.stat().st_size
    assert stored["file"] == path.name and stored["dtype"] == "float32"
    assert {k: stored[k] for k in ("backbone", "input_height", "input_width", "num_seg_classes")} == {
        "backbone": "resnet18", "input_height": 64, "input_width": 160, "num_seg_classes": 5}
    assert all(stored[k] == v for k, v in INFO.items())
    # the weights file alone carries the architecture and pre-processing, not the descriptive extras
    header = json.loads(header_of(path)["refine"])
    assert header == {"format": "refine_perception.clrnet/1", "backbone": "resnet18", "input_height": 64,
                      "input_width": 160, "num_seg_classes": 5, "num_priors": 192, "sample_points": 36,
                      "pooling": "line", "cut_height": 270, "ori_width": 1640,
                      "ori_height": 590}


def test_fp16_export_halves_the_file_and_stays_close(saved: tuple, tmp_path: Path) -> None:
    path, metadata, images, reference = saved
    describe = tmp_path / "extra.json"
    describe.write_text(json.dumps({"heldout_f1": 0.5}))
    out = tmp_path / "default.safetensors"
    exported = export_default(path, out, describe)
    assert exported["dtype"] == "float16" and exported["bytes"] == out.stat().st_size
    assert 0.45 < exported["bytes"] / metadata["bytes"] < 0.55
    assert exported["heldout_f1"] == 0.5 and exported["data"] == "unit test" and exported["cut_height"] == 270
    dtypes = {tensor.dtype for tensor in safetensors.torch.load_file(str(out)).values()}
    assert torch.float16 in dtypes and not dtypes & {torch.float32, torch.float64}
    model, _ = load_lane_model(out)
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        output = model(images)
    for name in ("lanes", "types", "colors"):
        torch.testing.assert_close(getattr(output, name), getattr(reference, name), rtol=0, atol=FP16_ATOL)
    assert not torch.equal(output.lanes, reference.lanes)  # the weights were really rounded


def test_changed_byte_fails_the_hash(saved: tuple, tmp_path: Path) -> None:
    path = copy_model(saved[0], tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        load_lane_model(path)


def test_corrupted_header_without_json(saved: tuple, tmp_path: Path) -> None:
    path = copy_model(saved[0], tmp_path, with_json=False)
    data = bytearray(path.read_bytes())
    data[8:24] = b"#not json here!#"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="cannot read safetensors"):
        load_lane_model(path)
    path.write_bytes(saved[0].read_bytes()[:1000])  # truncated
    with pytest.raises(ModelFileError, match="cannot read safetensors"):
        load_lane_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        load_lane_model(tmp_path / "nothing.safetensors")


def test_unreadable_json(saved: tuple, tmp_path: Path) -> None:
    path = copy_model(saved[0], tmp_path)
    path.with_suffix(".json").write_text("{broken")
    with pytest.raises(ModelFileError, match="not valid json"):
        load_lane_model(path)


def test_json_that_is_not_an_object(saved: tuple, tmp_path: Path) -> None:
    path = copy_model(saved[0], tmp_path)
    path.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ModelFileError):
        load_lane_model(path)


def test_renamed_tensor(saved: tuple, tmp_path: Path) -> None:
    state = safetensors.torch.load_file(str(saved[0]))
    key = next(k for k in state if k.startswith("head."))
    state[key.replace("head.", "head.renamed_", 1)] = state.pop(key)
    path = tmp_path / "renamed.safetensors"
    safetensors.torch.save_file(state, str(path), metadata=header_of(saved[0]))
    with pytest.raises(ModelFileError, match="do not fit the architecture"):
        load_lane_model(path)


def test_nan_weights(saved: tuple, tmp_path: Path) -> None:
    state = safetensors.torch.load_file(str(saved[0]))
    key = next(k for k, v in state.items() if k.endswith(".weight") and v.is_floating_point())
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    path = tmp_path / "nan.safetensors"
    safetensors.torch.save_file(state, str(path), metadata=header_of(saved[0]))
    with pytest.raises(ModelFileError, match="NaN"):
        load_lane_model(path)


def test_pooling_in_the_header(saved: tuple, tmp_path: Path) -> None:
    """Files written before the pooling option load with the paper's pooling; an unknown one is refused."""
    state = safetensors.torch.load_file(str(saved[0]))
    header = json.loads(header_of(saved[0])["refine"])
    for pooling, expected in ((None, "line"), ("lane", "lane"), ("curve", None)):
        if pooling is None:
            header.pop("pooling")
        else:
            header["pooling"] = pooling
        path = tmp_path / f"{pooling}.safetensors"
        safetensors.torch.save_file(state, str(path), metadata={"refine": json.dumps(header)})
        if expected is None:
            with pytest.raises(ModelFileError, match="pooling"):
                load_lane_model(path)
        else:
            assert load_lane_model(path)[0].head.pooling == expected


def test_safetensors_file_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(ModelFileError, match="not a refine_perception CLRNet file"):
        load_lane_model(path)
