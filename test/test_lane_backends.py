"""Lane inference backends on a small CLRNet: onnxruntime against torch eager, the ONNX cache (reuse,
re-export on new weights, rebuild when corrupt), `auto`'s choice, refused combinations and bad input.
CUDA and TensorRT paths run only where a GPU / the tensorrt package exist."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from refine_perception.data.synthetic.road import road_sample
from refine_perception.lanes import backends
from refine_perception.lanes.backends import (
    BackendConfig,
    TorchBackend,
    UnsupportedCombination,
    build_engines,
    int8_onnx_file,
    open_lane_backend,
)
from refine_perception.metrics.culane import culane_f1
from refine_perception.models.clrnet.decode import DecodeSettings
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.clrnet.predict import LanePredictor
from refine_perception.models.clrnet.weights import load_lane_model, save_lane_model, sha256

SIZE = (64, 160)
NO_CUDA = "needs a CUDA GPU (torch.cuda.is_available() is false here)"
NO_TENSORRT = "needs the tensorrt Python package and a CUDA GPU"


def small_model(seed: int) -> CLRNet:
    torch.manual_seed(seed)
    return CLRNet("resnet18", 5, SIZE, num_priors=32, sample_points=8).eval()


def save(path: Path, seed: int) -> Path:
    save_lane_model(path, small_model(seed), "resnet18", {"cut_height": 0})
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(tmp_path_factory.mktemp("weights") / "lanes.safetensors", seed=0)


@pytest.fixture(scope="module")
def cache(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding the export of `weights`, made once; tests that damage it copy it."""
    directory = tmp_path_factory.mktemp("cache")
    open_lane_backend(weights, BackendConfig("onnxruntime", device="cpu", cache_dir=directory, threads=1))
    return directory


def batch(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, *SIZE), dtype=np.float32)


def eager(weights: Path, images: np.ndarray) -> list[np.ndarray]:
    model, _ = load_lane_model(weights)
    with torch.no_grad():
        return [out.numpy() for out in model(torch.from_numpy(images))]


def onnx_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.onnx"))


def test_onnxruntime_matches_torch_eager(weights: Path, cache: Path) -> None:
    backend = open_lane_backend(weights, BackendConfig("onnxruntime", cache_dir=cache, threads=1))
    images = batch(2)
    got = backend(images)
    for out, want in zip(got, eager(weights, images)):
        assert out.dtype == np.float32 and out.shape == want.shape
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=0)
    assert [o.shape for o in got] == [(2, 32, 78), (2, 32, 5), (2, 32, 3)]
    assert backend.info.as_dict() == {"backend": "onnxruntime", "device": "cpu", "precision": "fp32",
                                      "provider": backend.info.provider}
    assert backend.info.provider.endswith("CPUExecutionProvider")
    digest = load_lane_model(weights)[1]["sha256"]
    assert [p.name for p in onnx_files(cache)] == [f"clrnet-{digest[:16]}-opset17-v3-64x160.onnx"]


def test_torch_cpu_backend_equals_the_model_forward(weights: Path) -> None:
    model, _ = load_lane_model(weights)
    backend = TorchBackend(model, device="cpu")
    images = batch(1, seed=3)
    for out, want in zip(backend(images), eager(weights, images)):
        np.testing.assert_array_equal(out, want)
    assert (backend.info.name, backend.info.device, backend.info.precision) == ("torch", "cpu", "fp32")


def test_onnx_cache_is_reused(weights: Path, cache: Path) -> None:
    config = BackendConfig("onnxruntime", device="cpu", cache_dir=cache, threads=1)
    (first,) = onnx_files(cache)
    before = first.stat()
    open_lane_backend(weights, config)
    after = first.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert first.with_name(first.name + ".sha256").read_text().strip() == sha256(first)


def test_new_weights_are_exported_again(tmp_path: Path) -> None:
    path = save(tmp_path / "model.safetensors", seed=0)
    config = BackendConfig("onnxruntime", device="cpu", cache_dir=tmp_path / "cache", threads=1)
    open_lane_backend(path, config)
    save(path, seed=1)  # same file name, other weights
    backend = open_lane_backend(path, config)
    assert len(onnx_files(tmp_path / "cache")) == 2
    images = batch(1)
    for out, want in zip(backend(images), eager(path, images)):
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("damage", ["truncate", "drop_sidecar"])
def test_corrupt_onnx_cache_is_rebuilt(weights: Path, cache: Path, tmp_path: Path, damage: str) -> None:
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    config = BackendConfig("onnxruntime", device="cpu", cache_dir=tmp_path, threads=1)
    (onnx,) = onnx_files(tmp_path)
    sidecar = onnx.with_name(onnx.name + ".sha256")
    if damage == "truncate":
        onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    else:
        sidecar.unlink()
    inode = onnx.stat().st_ino
    backend = open_lane_backend(weights, config)
    assert onnx.stat().st_ino != inode  # written again, not trusted
    assert sidecar.read_text().strip() == sha256(onnx)
    images = batch(1)
    for out, want in zip(backend(images), eager(weights, images)):
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=0)


def test_int8_onnxruntime_is_calibrated_and_cached(weights: Path, cache: Path, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    shutil.copytree(cache, directory)
    backend = open_lane_backend(weights, BackendConfig("onnxruntime", device="cpu", precision="int8",
                                                       cache_dir=directory, threads=1))
    assert backend.info.precision == "int8"
    (int8_file,) = [p for p in onnx_files(directory) if "-int8" in p.name]
    stamp = int8_file.stat().st_mtime_ns
    # precision auto on the CPU is int8, from the same cached file
    auto = open_lane_backend(weights, BackendConfig("auto", device="cpu", precision="auto", cache_dir=directory,
                                                    threads=1))
    assert (auto.info.name, auto.info.precision) == ("onnxruntime", "int8")
    assert int8_file.stat().st_mtime_ns == stamp
    images = batch(2, seed=5)
    for got, want in zip(backend(images), eager(weights, images)):
        assert got.shape == want.shape and np.isfinite(got).all()
    # how close the raw outputs come depends on the CPU's int8 kernels (AVX2 sums products in 16 bits,
    # VNNI/AMX in 32): what must hold everywhere is that the lanes agree, checked on the shipped model below


def int8_weight_range(path: Path) -> tuple[int, int]:
    import onnx
    from onnx import numpy_helper

    values = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
              if t.data_type == onnx.TensorProto.INT8]
    return min(int(v.min()) for v in values), max(int(v.max()) for v in values)


@pytest.mark.parametrize("dot_product", [True, False])
def test_int8_weights_use_7_bits_on_cpus_without_an_int8_dot_product(weights: Path, cache: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    dot_product: bool) -> None:
    """onnxruntime's AVX2 kernel (no VNNI/AMX) adds pairs of u8 x s8 products in 16 bits, which full-range
    weights can saturate; there the weights are quantised to 7 bits, in a cache file of their own."""
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    monkeypatch.setattr(backends, "has_int8_dot_product", lambda: dot_product)
    path, _ = int8_onnx_file(weights, tmp_path)
    low, high = int8_weight_range(path)
    if dot_product:
        assert "-w7-" not in path.name and (low < -64 or high > 64)
    else:
        assert "-int8-w7-" in path.name and -64 <= low and high <= 64


SHIPPED = Path(__file__).resolve().parents[1] / "models" / "clrnet_r18_synthetic.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("weights_7bit", [False, True], ids=["as-this-cpu-gets", "7-bit-weights"])
def test_int8_lanes_agree_with_fp32_on_road_scenes(tmp_path: Path, weights_7bit: bool) -> None:
    """The shipped model on 24 held-out road scenes: the lanes of the CPU default (int8 onnxruntime, as
    quantised for this CPU) are those of fp32, scored with the CULane metric taking fp32 as the truth.
    Measured: F1 100 % with full-range weights (VNNI/AMX CPUs), 98.7 % at IoU 0.5 and 0.75 with the 7-bit
    weights of AVX2-only CPUs (which their kernel computes exactly: no 16-bit saturation is possible)."""
    images = [road_sample(2, k).image for k in range(24)]

    def lanes(precision: str) -> list[list[np.ndarray]]:
        # 7-bit weights: what an AVX2-only CPU runs, checked on every CPU
        config = BackendConfig("onnxruntime", "cpu", precision, cache_dir=tmp_path, int8_weight_bits=7 * weights_7bit)
        backend = open_lane_backend(SHIPPED, config)
        predictor = LanePredictor(backend, backend.input_size, DecodeSettings())
        return [prediction.lanes for prediction in predictor(images)]

    fp32 = lanes("fp32")
    assert sum(map(len, fp32)) >= 60  # scenes with lanes, found
    result = culane_f1(lanes("int8"), fp32, iou_thresholds=[0.5, 0.75])
    assert result.f1(0.5) >= 0.93 and result.f1(0.75) >= 0.9, result


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, auto picks tensorrt or torch on CUDA")
def test_auto_picks_onnxruntime_on_cpu(weights: Path, cache: Path) -> None:
    backend = open_lane_backend(weights, BackendConfig(cache_dir=cache, threads=1))
    assert backend.info.name == "onnxruntime"
    assert backend.info.provider.endswith("CPUExecutionProvider")


@pytest.mark.parametrize("config, match", [
    (BackendConfig("torch", device="cpu", precision="fp16"), "fp32 only"),
    (BackendConfig("torch", device="cpu", cuda_graph=True), "CUDA graphs"),
    (BackendConfig("torch", device="cpu", channels_last=True), "channels-last"),
    (BackendConfig("onnxruntime", precision="fp16"), "runs fp32"),
    (BackendConfig("onnxruntime", channels_last=True), "torch options"),
    (BackendConfig("tensorrt", device="cpu"), "needs a CUDA device"),
    (BackendConfig("auto", device="cpu", precision="fp16"), "fp16 needs"),
    (BackendConfig("torch", device="cpu", precision="int8"), "int8 runs on onnxruntime only"),
])
def test_unsupported_combinations_raise(weights: Path, tmp_path: Path, config: BackendConfig, match: str) -> None:
    config = BackendConfig(**{**config.__dict__, "cache_dir": tmp_path})
    with pytest.raises(UnsupportedCombination, match=match):
        open_lane_backend(weights, config)


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "openvino"}, "backend must be"),
    ({"precision": "int4"}, "precision must be"),
    ({"device": "gpu"}, "device must be"),
    ({"threads": -1}, "threads"),
    ({"max_batch": 0}, "max_batch"),
])
def test_bad_config_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BackendConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_batches_are_rejected(weights: Path) -> None:
    backend = TorchBackend(load_lane_model(weights)[0], device="cpu")
    with pytest.raises(TypeError, match="float32"):
        backend(batch(1).astype(np.float64))
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 160\)"):
        backend(np.zeros((1, 3, 64, 128), np.float32))
    nan = batch(1)
    nan[0, 2, 10, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        backend(nan)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        backend(batch(1) * 255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("precision, channels_last, atol", [("fp32", False, 1e-3), ("fp16", True, 5e-2)])
def test_torch_cuda_with_graph_matches_eager(weights: Path, precision: str, channels_last: bool,
                                             atol: float) -> None:
    backend = open_lane_backend(weights, BackendConfig("torch", "cuda", precision, channels_last=channels_last,
                                                       cuda_graph=True))
    for n in (1, 2, 1):  # a new batch shape re-captures
        images = batch(n, seed=n)
        for out, want in zip(backend(images), eager(weights, images)):
            np.testing.assert_allclose(out, want, atol=atol, rtol=0)
    assert backend.info.precision == precision and "CUDA graph" in backend.info.provider


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                    reason=NO_TENSORRT)
def test_tensorrt_engine_matches_eager_and_is_cached(weights: Path, tmp_path: Path) -> None:
    (engine,) = build_engines([weights], ["fp32"], max_batch=2, cache_dir=tmp_path)
    mtime = engine.stat().st_mtime_ns
    backend = open_lane_backend(weights, BackendConfig("tensorrt", "cuda", "fp32", cache_dir=tmp_path, max_batch=2))
    assert engine.stat().st_mtime_ns == mtime
    images = batch(2)
    for out, want in zip(backend(images), eager(weights, images)):
        np.testing.assert_allclose(out, want, atol=1e-3, rtol=0)
    assert backend.info.name == "tensorrt" and "fp32" in engine.name
