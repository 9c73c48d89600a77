"""The shared inference runtime on small networks of each kind (CLRNet, SpatialEmbeddings, discriminative):
onnxruntime and OpenVINO against torch eager, int8, the derived-file cache (reuse, re-export on new weights, rebuild when
damaged), `auto`'s measured and recorded choice, per-network threads, refused combinations and bad input.
CUDA and TensorRT paths run only where a GPU / the tensorrt package exist."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from refine_perception.data.synthetic.road import road_sample
from refine_perception.metrics.culane import culane_f1
from refine_perception.models.clrnet.decode import DecodeSettings
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.clrnet.predict import LanePredictor
from refine_perception.models.clrnet.weights import ModelFileError, load_lane_model, save_lane_model, sha256
from refine_perception.models.discriminative.network import DiscriminativeNet
from refine_perception.models.discriminative.weights import save_discriminative
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.weights import save_spatial_embeddings
from refine_perception.runtime import RuntimeConfig, UnsupportedCombination, load_model, open_network, quantize, select
from refine_perception.runtime.openvino_backend import available as openvino_available
from refine_perception.runtime.quantize import int8_onnx_file
from refine_perception.runtime.tensorrt_backend import engine_file
from refine_perception.runtime.torch_backend import TorchNetwork, cpu_has_bf16

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
    open_network(weights, RuntimeConfig("onnxruntime", device="cpu", precision="fp32", cache_dir=directory, threads=1))
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
    backend = open_network(weights, RuntimeConfig("onnxruntime", precision="fp32", cache_dir=cache, threads=1))
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
    backend = TorchNetwork(load_model(weights), device="cpu")
    images = batch(1, seed=3)
    for out, want in zip(backend(images), eager(weights, images)):
        np.testing.assert_array_equal(out, want)
    assert (backend.info.name, backend.info.device, backend.info.precision) == ("torch", "cpu", "fp32")


def test_onnx_cache_is_reused(weights: Path, cache: Path) -> None:
    config = RuntimeConfig("onnxruntime", device="cpu", precision="fp32", cache_dir=cache, threads=1)
    (first,) = onnx_files(cache)
    before = first.stat()
    open_network(weights, config)
    after = first.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert first.with_name(first.name + ".sha256").read_text().strip() == sha256(first)


def test_new_weights_are_exported_again(tmp_path: Path) -> None:
    path = save(tmp_path / "model.safetensors", seed=0)
    config = RuntimeConfig("onnxruntime", device="cpu", precision="fp32", cache_dir=tmp_path / "cache", threads=1)
    open_network(path, config)
    save(path, seed=1)  # same file name, other weights
    backend = open_network(path, config)
    assert len(onnx_files(tmp_path / "cache")) == 2
    images = batch(1)
    for out, want in zip(backend(images), eager(path, images)):
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("damage", ["truncate", "drop_sidecar"])
def test_corrupt_onnx_cache_is_rebuilt(weights: Path, cache: Path, tmp_path: Path, damage: str) -> None:
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    config = RuntimeConfig("onnxruntime", device="cpu", precision="fp32", cache_dir=tmp_path, threads=1)
    (onnx,) = onnx_files(tmp_path)
    sidecar = onnx.with_name(onnx.name + ".sha256")
    if damage == "truncate":
        onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    else:
        sidecar.unlink()
    inode = onnx.stat().st_ino
    backend = open_network(weights, config)
    assert onnx.stat().st_ino != inode  # written again, not trusted
    assert sidecar.read_text().strip() == sha256(onnx)
    images = batch(1)
    for out, want in zip(backend(images), eager(weights, images)):
        np.testing.assert_allclose(out, want, atol=1e-4, rtol=0)


def test_int8_onnxruntime_is_calibrated_and_cached(weights: Path, cache: Path, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    shutil.copytree(cache, directory)
    backend = open_network(weights, RuntimeConfig("onnxruntime", device="cpu", precision="int8",
                                                       cache_dir=directory, threads=1))
    assert backend.info.precision == "int8"
    (int8_file,) = [p for p in onnx_files(directory) if "-int8" in p.name]
    stamp = int8_file.stat().st_mtime_ns
    # precision auto on the CPU is int8 for CLRNet, from the same cached file
    auto = open_network(weights, RuntimeConfig("onnxruntime", device="cpu", cache_dir=directory, threads=1))
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
    monkeypatch.setattr(quantize, "has_int8_dot_product", lambda: dot_product)
    path = int8_onnx_file(load_model(weights), tmp_path)
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
        config = RuntimeConfig("onnxruntime", "cpu", precision, cache_dir=tmp_path, int8_weight_bits=7 * weights_7bit)
        backend = open_network(SHIPPED, config)
        predictor = LanePredictor(backend, backend.input_size, DecodeSettings())
        return [prediction.lanes for prediction in predictor(images)]

    fp32 = lanes("fp32")
    assert sum(map(len, fp32)) >= 60  # scenes with lanes, found
    result = culane_f1(lanes("int8"), fp32, iou_thresholds=[0.5, 0.75])
    assert result.f1(0.5) >= 0.93 and result.f1(0.75) >= 0.9, result


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, auto picks tensorrt or torch on CUDA")
def test_auto_measures_the_cpu_backends_and_records_the_fastest(weights: Path, cache: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    config = RuntimeConfig(precision="fp32", cache_dir=tmp_path, threads=1)
    chosen = open_network(weights, config)
    expected = {"onnxruntime:fp32", "torch:fp32"} | ({"openvino:fp32"} if openvino_available() else set())
    assert set(chosen.selection) == expected
    assert f"{chosen.info.name}:fp32" == min(chosen.selection, key=chosen.selection.get)
    # the choice is recorded for this machine: the next open measures nothing
    monkeypatch.setattr(select, "interleaved_median_ms", lambda *_: pytest.fail("measured again"))
    again = open_network(weights, config)
    assert again.info == chosen.info and again.selection == {}
    # another thread count is another measurement
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        open_network(weights, RuntimeConfig(precision="fp32", cache_dir=tmp_path, threads=2))


@pytest.mark.parametrize("config, match", [
    (RuntimeConfig("torch", device="cpu", precision="fp16"), "fp32 or bf16"),
    (RuntimeConfig("torch", device="cpu", cuda_graph=True), "CUDA graphs"),
    (RuntimeConfig("torch", device="cpu", channels_last=True), "channels-last"),
    (RuntimeConfig("onnxruntime", precision="fp16"), "runs fp32 or int8"),
    (RuntimeConfig("openvino", precision="fp16"), "not fp16"),
    (RuntimeConfig("openvino", device="cuda"), "on the CPU"),
    (RuntimeConfig("onnxruntime", channels_last=True), "torch options"),
    (RuntimeConfig("tensorrt", device="cpu"), "needs a CUDA device"),
    (RuntimeConfig("auto", device="cpu", precision="fp16"), "fp16 needs"),
    (RuntimeConfig("torch", device="cpu", precision="int8"), "int8 runs on onnxruntime or openvino"),
])
def test_unsupported_combinations_raise(weights: Path, tmp_path: Path, config: RuntimeConfig, match: str) -> None:
    config = RuntimeConfig(**{**config.__dict__, "cache_dir": tmp_path})
    with pytest.raises(UnsupportedCombination, match=match):
        open_network(weights, config)


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "openvino_gpu"}, "backend must be"),
    ({"precision": "int4"}, "precision must be"),
    ({"device": "gpu"}, "device must be"),
    ({"threads": -1}, "threads"),
    ({"max_batch": 0}, "max_batch"),
])
def test_bad_config_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RuntimeConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_batches_are_rejected(weights: Path) -> None:
    backend = TorchNetwork(load_model(weights), device="cpu")
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
    backend = open_network(weights, RuntimeConfig("torch", "cuda", precision, channels_last=channels_last,
                                                       cuda_graph=True))
    for n in (1, 2, 1):  # a new batch shape re-captures
        images = batch(n, seed=n)
        for out, want in zip(backend(images), eager(weights, images)):
            np.testing.assert_allclose(out, want, atol=atol, rtol=0)
    assert backend.info.precision == precision and "CUDA graph" in backend.info.provider


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                    reason=NO_TENSORRT)
def test_tensorrt_engine_matches_eager_and_is_cached(weights: Path, tmp_path: Path) -> None:
    engine, _ = engine_file(load_model(weights), "fp32", max_batch=2, folder=tmp_path)
    mtime = engine.stat().st_mtime_ns
    backend = open_network(weights, RuntimeConfig("tensorrt", "cuda", "fp32", cache_dir=tmp_path, max_batch=2))
    assert engine.stat().st_mtime_ns == mtime
    images = batch(2)
    for out, want in zip(backend(images), eager(weights, images)):
        np.testing.assert_allclose(out, want, atol=1e-3, rtol=0)
    assert backend.info.name == "tensorrt" and "fp32" in engine.name


def small_instance_model(path: Path) -> Path:
    torch.manual_seed(0)
    model = SpatialEmbeddingNet(1, 2, width=0.5, input_size=(48, 64), class_names=["stick"]).eval()
    with torch.no_grad():  # the output layer starts at zero offsets; random ones exercise the whole graph
        model.embedding_decoder.output.weight.normal_(0, 0.1)
    save_spatial_embeddings(path, model)
    return path


@pytest.fixture(scope="module")
def instance_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_instance_model(tmp_path_factory.mktemp("instances") / "sticks.safetensors")


@pytest.fixture(scope="module")
def discriminative_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("discriminative") / "sticks.safetensors"
    save_discriminative(path, DiscriminativeNet(1, 8, 0.5, coordinates=True, input_size=(48, 64)).eval())
    return path


CPU_BACKENDS = ["onnxruntime", "torch"] + (["openvino"] if openvino_available() else [])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_every_cpu_backend_runs_every_kind_in_fp32(weights: Path, instance_weights: Path, discriminative_weights: Path,
                                                   tmp_path: Path, backend: str) -> None:
    for path, size in ((weights, SIZE), (instance_weights, (48, 64)), (discriminative_weights, (48, 64))):
        network = open_network(path, RuntimeConfig(backend, "cpu", "fp32", cache_dir=tmp_path, threads=1))
        images = np.random.default_rng(2).random((2, 3, *size), dtype=np.float32)
        model = load_model(path).module
        with torch.no_grad():
            want = model(torch.from_numpy(images))
        want = [want] if isinstance(want, torch.Tensor) else list(want)
        got = network(images)
        assert len(got) == len(want) == len(network.output_names)
        for out, expected in zip(got, want):
            assert out.dtype == np.float32 and out.flags.c_contiguous
            np.testing.assert_allclose(out, expected.numpy(), atol=2e-4, rtol=0)
        assert (network.info.name, network.info.device, network.info.precision) == (backend, "cpu", "fp32")


@pytest.mark.skipif(not openvino_available(), reason="needs the openvino package")
def test_openvino_int8_runs_the_qdq_file_with_full_range_weights(weights: Path, cache: Path, tmp_path: Path) -> None:
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    network = open_network(weights, RuntimeConfig("openvino", "cpu", "int8", cache_dir=tmp_path, threads=1))
    assert network.info.precision == "int8"
    (int8_file,) = [p for p in onnx_files(tmp_path) if "-int8-" in p.name]
    assert "-w7-" not in int8_file.name  # oneDNN adjusts the weight scale itself where the CPU needs it
    images = batch(2, seed=5)
    for got, want in zip(network(images), eager(weights, images)):
        assert got.shape == want.shape and np.isfinite(got).all()
        assert np.abs(got - want).mean() < 0.05 * np.abs(want).mean() + 1e-3


def test_int8_instance_network_is_calibrated_on_sticks_and_stays_close(instance_weights: Path, tmp_path: Path) -> None:
    network = open_network(instance_weights, RuntimeConfig("onnxruntime", "cpu", "int8", cache_dir=tmp_path, threads=1))
    (int8_file,) = [p for p in onnx_files(tmp_path) if "-int8" in p.name]
    assert int8_file.name.startswith("spatial-embeddings-") and "-cal32s97-" in int8_file.name
    images = np.random.default_rng(4).random((1, 3, 48, 64), dtype=np.float32)
    (got,) = network(images)
    with torch.no_grad():
        want = load_model(instance_weights).module(torch.from_numpy(images)).numpy()
    assert np.abs(got - want).mean() < 0.05 * np.abs(want).mean() + 1e-3


def test_precision_auto_on_the_cpu_is_int8_only_where_the_kind_showed_its_accuracy(instance_weights: Path,
                                                                                   tmp_path: Path) -> None:
    network = open_network(instance_weights, RuntimeConfig("onnxruntime", "cpu", cache_dir=tmp_path, threads=1))
    assert network.info.precision == "fp32"


def test_threads_hold_for_each_network_not_the_process(weights: Path, cache: Path) -> None:
    before = torch.get_num_threads()
    torch_net = open_network(weights, RuntimeConfig("torch", "cpu", "fp32", cache_dir=cache, threads=1))
    torch_net(batch(1))
    assert torch.get_num_threads() == before
    ort_net = open_network(weights, RuntimeConfig("onnxruntime", "cpu", "fp32", cache_dir=cache, threads=1))
    assert ort_net.session.get_session_options().intra_op_num_threads == 1
    if openvino_available():
        ov_net = open_network(weights, RuntimeConfig("openvino", "cpu", "fp32", cache_dir=cache, threads=1))
        assert int(ov_net.compiled.get_property("INFERENCE_NUM_THREADS")) == 1


@pytest.mark.skipif(not cpu_has_bf16(), reason="bf16 on the CPU needs AVX-512 BF16 or AMX")
def test_torch_bf16_on_the_cpu_is_close_to_fp32(weights: Path) -> None:
    network = open_network(weights, RuntimeConfig("torch", "cpu", "bf16"))
    images = batch(1, seed=7)
    for got, want in zip(network(images), eager(weights, images)):
        assert np.abs(got - want).mean() < 0.05 * np.abs(want).mean() + 1e-2


def test_a_model_file_of_an_unknown_kind_is_refused(weights: Path, tmp_path: Path) -> None:
    import safetensors.torch

    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(path), metadata={"refine": '{"format": "someone.else/1"}'})
    with pytest.raises(ModelFileError, match="unknown model format"):
        open_network(path, RuntimeConfig(cache_dir=tmp_path))
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="cannot read"):
        open_network(path, RuntimeConfig(cache_dir=tmp_path))


def test_precision_auto_is_resolved_per_backend_on_a_gpu_machine(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU-only backend asked for on a machine with a GPU must not be given fp16."""
    model = load_model(weights)
    monkeypatch.setattr(select, "on_gpu", lambda device: True)
    monkeypatch.setattr(select, "_onnxruntime_gpu", lambda config: False)
    assert select.candidates(model, RuntimeConfig("onnxruntime")) == [("onnxruntime", "fp32")]
    assert select.candidates(model, RuntimeConfig("openvino")) == [("openvino", "int8")]
    assert select.candidates(model, RuntimeConfig("torch")) == [("torch", "fp16")]


def test_a_hash_claimed_by_the_header_does_not_name_the_caches(weights: Path, tmp_path: Path) -> None:
    """Without its json a model file is hashed: a header claiming another file's hash cannot borrow that
    file's ONNX, int8 or engine caches."""
    import json

    import safetensors
    import safetensors.torch

    with safetensors.safe_open(str(weights), framework="pt") as handle:
        header = json.loads(handle.metadata()["refine"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    claimed = tmp_path / "claims.safetensors"
    safetensors.torch.save_file(tensors, str(claimed), metadata={"refine": json.dumps({**header, "sha256": "0" * 64})})
    assert load_model(claimed).digest == sha256(claimed)


def _build_once(args: tuple[str, str]) -> str:
    from refine_perception.runtime.cache import cached_file

    target, log = args

    def build(tmp: Path) -> None:
        with open(log, "a") as stream:
            stream.write("built\n")
        time.sleep(0.5)
        tmp.write_text("derived")

    return cached_file(Path(target), build)


def test_processes_sharing_the_cache_build_a_file_once(tmp_path: Path) -> None:
    import multiprocessing

    target, log = tmp_path / "derived.onnx", tmp_path / "builds.log"
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        digests = pool.map(_build_once, [(str(target), str(log))] * 3)
    assert len(set(digests)) == 1 and log.read_text() == "built\n"
    assert target.stat().st_mode & 0o077 == 0o666 & ~current_umask() & 0o077  # the umask's, not owner-only


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU candidates only")
def test_a_failing_candidate_is_left_out_and_the_choice_not_recorded(weights: Path, cache: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    real_open = select.open_backend

    def flaky(model, backend, precision, config):  # noqa: ANN001, ANN202 - the patched function's signature
        if backend == "onnxruntime":
            raise RuntimeError("out of memory")
        return real_open(model, backend, precision, config)

    monkeypatch.setattr(select, "open_backend", flaky)
    network = open_network(weights, RuntimeConfig(precision="fp32", cache_dir=tmp_path, threads=1))
    assert network.info.name != "onnxruntime" and "onnxruntime:fp32" not in network.selection
    assert not (tmp_path / select.SELECTION_FILE).exists()  # measured again next time, when it may open


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU candidates only")
def test_a_read_only_cache_costs_the_record_not_the_network(weights: Path, cache: Path, tmp_path: Path) -> None:
    shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
    record = tmp_path / select.SELECTION_FILE
    record.mkdir()  # not writable as a file
    with pytest.warns(UserWarning, match="cannot record"):
        network = open_network(weights, RuntimeConfig(precision="fp32", cache_dir=tmp_path, threads=1))
    assert network.selection
