"""CLRNet inference backends behind one call: float32 (B, 3, H, W) in [0, 1] in, numpy outputs out.

`auto` takes the first available of, in this order:
1. tensorrt (CUDA): fused kernels and fp16 tensor cores; a published CLRNet-R34 320x800 measurement on
   a Jetson Orin (TensorRT 10.3) gives 7.5 ms in TensorRT fp16 against 39.3 ms in PyTorch fp32.
2. torch on CUDA: no export or engine build, and CUDA graphs remove the per-kernel launch cost that
   dominates a small network at batch 1.
3. onnxruntime on CUDA (only chosen when torch itself sees no GPU, e.g. a CPU-only torch build next to
   onnxruntime-gpu): same GPU, but generic kernels and no fp16 here.
4. onnxruntime on CPU: its graph optimisations (constant folding, conv+bn+relu fusion) beat eager torch
   on a CPU; measured for a 64x160 model with 32 priors: 16.8 ms vs 26.2 ms median at one thread
   (with 192 priors x 36 points the head dominates and both take ~98 ms). Precision `auto` runs it in
   int8 (see quantize.py: 2.2x faster than fp32 for the default model, F1 within half a point).

Precision `auto` means fp16 on a GPU and int8 on the CPU (onnxruntime; torch on the CPU runs fp32).

Exported ONNX files and TensorRT engines are cached on disk, named after everything that changes them
(weights hash, opset and input size; ONNX hash, TensorRT version, GPU and precision for engines), so a
stale file is never reused; each has a `.sha256` sidecar so a truncated or edited cache file is rebuilt.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from refine_perception.core.cpu import has_int8_dot_product
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.clrnet.weights import load_lane_model, sha256
from refine_perception.models.threads import intra_op_threads

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
OPSET = 17
EXPORT_VERSION = 3  # raised whenever the exported graph changes for the same weights (2: gathers, not
# GridSample; 3: the 9x1 convs as Conv2d)
INPUT_NAME = "images"
OUTPUT_NAMES = ("lanes", "types", "colors")


class BackendError(RuntimeError):
    """A backend that cannot run here (missing library or GPU) or failed to build."""


class UnsupportedCombination(ValueError):
    """A backend, device and precision that do not go together (e.g. fp16 on CPU torch)."""


class LaneArrays(NamedTuple):
    """The network's raw outputs as float32 arrays, in `CLRNetOutput`'s layout."""

    lanes: np.ndarray
    types: np.ndarray
    colors: np.ndarray


@dataclass(frozen=True)
class BackendInfo:
    """What runs the model, for /diagnostics and logs."""

    name: str
    device: str
    precision: str
    provider: str

    def as_dict(self) -> dict[str, str]:
        return {"backend": self.name, "device": self.device, "precision": self.precision,
                "provider": self.provider}


@dataclass(frozen=True)
class BackendConfig:
    """How to run the model. `device` None means the first GPU when there is one, else the CPU.
    `threads` 0 lets the backend choose (onnxruntime: every core); on torch the count holds for this
    backend's calls only. `max_batch` bounds TensorRT's optimisation profile. `int8_weight_bits` 0 picks
    the onnxruntime int8 weights for this CPU (7 bits without an int8 dot product, else 8); 7 or 8 forces
    them, e.g. to measure on one machine what the other kind of CPU runs."""

    backend: str = "auto"
    device: str | None = None
    precision: str = "fp32"
    cache_dir: str | Path | None = None
    threads: int = 0
    channels_last: bool = False
    cuda_graph: bool = False
    max_batch: int = 1
    int8_weight_bits: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.int8_weight_bits not in (0, 7, 8):
            raise ValueError(f"int8_weight_bits must be 0 (this CPU's), 7 or 8, got {self.int8_weight_bits}")


class LaneBackend(ABC):
    """One loaded model; call it with a batch. Not thread-safe: give each thread its own backend."""

    info: BackendInfo

    def __init__(self, input_size: tuple[int, int]) -> None:
        self.input_size = input_size
        self.metadata: dict[str, Any] = {}  # the model file's metadata (set by open_lane_backend)

    def __call__(self, images: np.ndarray) -> LaneArrays:
        check_batch(images, self.input_size)
        return LaneArrays(*(np.ascontiguousarray(out, dtype=np.float32) for out in self._run(images)))

    @abstractmethod
    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three outputs for a checked batch."""


def check_batch(images: Any, size: tuple[int, int]) -> None:
    """Reject what would give silent garbage: wrong type, shape or range (0..255 pixels), NaNs."""
    if not isinstance(images, np.ndarray) or images.dtype != np.float32:
        raise TypeError(f"lane backends take a float32 numpy batch, got "
                        f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[1:] != (3, *size):
        raise ValueError(f"lane backends take images of shape (B, 3, {size[0]}, {size[1]}), got {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError("input batch contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"input batch must lie in [0, 1] (BGR / 255), got values in [{low:g}, {high:g}]")


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "refine_perception"


def _cuda_device(device: str | None) -> torch.device | None:
    """The CUDA device `device` names (or the default one), None for the CPU."""
    if device == "cpu" or (device is None and not torch.cuda.is_available()):
        return None
    if not torch.cuda.is_available():
        raise BackendError(f"device {device!r} asked for, but torch sees no CUDA device")
    return torch.device(device or "cuda:0")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` fills a temporary file next to `path`, which then replaces it in one rename, so a
    crashed build or a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_file(path: Path, build: Callable[[Path], None]) -> str:
    """Make sure `path` holds an intact build; returns its SHA-256.

    The sidecar `<path>.sha256` is written after the file, so a missing or disagreeing sidecar means an
    interrupted write, a truncated disk or an edit: the file is rebuilt rather than trusted.
    """
    sidecar = path.with_name(path.name + ".sha256")
    if path.is_file() and sidecar.is_file():
        digest = sha256(path)
        if sidecar.read_text().strip() == digest:
            return digest
    _write_atomically(path, build)
    digest = sha256(path)
    _write_atomically(sidecar, lambda tmp: tmp.write_text(digest + "\n"))
    return digest


def export_onnx(model: CLRNet, path: Path, opset: int = OPSET) -> None:
    """Trace the eval-mode network on the CPU in fp32 with a free batch axis."""
    model = model.float().cpu().eval()
    example = torch.rand(1, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():  # the legacy exporter's notices, not problems of this model
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(path), opset_version=opset, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes, dynamo=False)


def int8_onnx_file(weights: str | Path, cache_dir: str | Path | None = None, reduce_range: bool | None = None
                   ) -> tuple[Path, tuple[int, int]]:
    """The cached int8 (QDQ) version of the model's ONNX export, calibrated as quantize.py says; 7-bit
    weights (`reduce_range`) by default where this CPU has no int8 dot product."""
    from refine_perception.lanes.quantize import CALIBRATION_IMAGES, CALIBRATION_SEED, calibration_images, quantize_onnx

    if reduce_range is None:
        reduce_range = not has_int8_dot_product()
    source, digest, input_size = onnx_file(weights, cache_dir)
    weight_bits = "-w7" if reduce_range else ""
    path = source.with_name(f"{source.stem}-int8{weight_bits}-cal{CALIBRATION_IMAGES}s{CALIBRATION_SEED}-{digest[:8]}.onnx")
    cut_height = int(load_lane_model(weights)[1].get("cut_height", 270))

    def build(tmp: Path) -> None:
        quantize_onnx(source, tmp, calibration_images(input_size, cut_height), INPUT_NAME, reduce_range)

    cached_file(path, build)
    return path, input_size


def onnx_file(weights: str | Path, cache_dir: str | Path | None = None, opset: int = OPSET
              ) -> tuple[Path, str, tuple[int, int]]:
    """The cached ONNX export of the model at `weights` (exported when missing, stale or corrupt), its
    SHA-256 and the model's input size (height, width)."""
    model, metadata = load_lane_model(weights)
    digest = metadata.get("sha256") or sha256(weights)
    height, width = model.input_size
    path = Path(cache_dir or default_cache_dir()) / f"clrnet-{digest[:16]}-opset{opset}-v{EXPORT_VERSION}-{height}x{width}.onnx"
    return path, cached_file(path, lambda tmp: export_onnx(model, tmp, opset)), model.input_size


class TorchBackend(LaneBackend):
    """Eager PyTorch; on CUDA optionally fp16, channels-last memory and a CUDA graph per batch shape."""

    def __init__(self, model: CLRNet, device: str | None = None, precision: str = "fp32",
                 channels_last: bool = False, cuda_graph: bool = False, threads: int = 0) -> None:
        super().__init__(model.input_size)
        self.threads = threads
        cuda = _cuda_device(device)
        if cuda is None and (precision != "fp32" or channels_last or cuda_graph):
            raise UnsupportedCombination("torch on the CPU runs fp32 only, without channels-last or CUDA "
                                         "graphs (CPU half-precision convolutions are slower than fp32)")
        self.device = cuda or torch.device("cpu")
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, self.dtype).to(memory_format=self.memory_format).eval()
        self.cuda_graph = cuda_graph
        self._graph: tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, ...]] | None = None
        name = torch.cuda.get_device_name(self.device) if cuda is not None else "cpu"
        provider = "eager" + (", channels-last" if channels_last else "") + (", CUDA graph" if cuda_graph else "")
        self.info = BackendInfo("torch", f"{self.device} ({name})" if cuda is not None else "cpu", precision,
                                f"torch {torch.__version__} {provider}")

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(images))

    def _to_device(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with intra_op_threads(self.threads):
            return self._run_model(images)

    def _run_model(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.cuda_graph:
            outputs = self._forward(self._to_device(images))
        else:
            if self._graph is None or self._graph[1].shape != images.shape:
                self._graph = self._capture(self._to_device(images))
            graph, static_input, outputs = self._graph
            static_input.copy_(self._to_device(images))
            graph.replay()
        lanes, types, colors = (out.float().cpu().numpy() for out in outputs)
        return lanes, types, colors

    def _capture(self, example: torch.Tensor
                 ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Record the forward for this batch shape, returning the graph and its fixed input and output
        tensors; a few warm-up runs on a side stream first, as capture requires (lazy cuDNN/cuBLAS
        initialisation must not happen inside it)."""
        static_input = example.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._forward(static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._forward(static_input)
        return graph, static_input, outputs


def onnxruntime_providers(device: str | None, cache_dir: Path) -> list[Any]:
    """onnxruntime's TensorRT and CUDA providers where installed (unless the CPU is asked for), CPU last.
    Independent of torch: onnxruntime-gpu works next to a CPU-only torch."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu" or (device is None and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendError(f"onnxruntime on {device} needs onnxruntime-gpu; providers here: {available}")
    index = int(device.partition(":")[2] or 0) if device else 0
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        providers.append(("TensorrtExecutionProvider", {
            "device_id": index, "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir / "ort-tensorrt")}))
    providers.append(("CUDAExecutionProvider", {"device_id": index}))
    providers.append("CPUExecutionProvider")
    return providers


class OnnxRuntimeBackend(LaneBackend):
    """onnxruntime on the cached ONNX export (fp32, or its int8 version), graph optimisations on."""

    def __init__(self, onnx_path: Path, input_size: tuple[int, int], device: str | None = None,
                 threads: int = 0, cache_dir: str | Path | None = None, precision: str = "fp32") -> None:
        import onnxruntime as ort

        super().__init__(input_size)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        providers = onnxruntime_providers(device, Path(cache_dir or default_cache_dir()))
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise BackendError(f"{onnx_path}: onnxruntime cannot load the model: {err}") from err
        active = self.session.get_providers()[0]
        self.info = BackendInfo("onnxruntime", "cpu" if active == "CPUExecutionProvider" else device or "cuda:0",
                                precision, f"onnxruntime {ort.__version__} {active}")

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lanes, types, colors = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return lanes, types, colors


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as err:
        raise BackendError("the tensorrt backend needs the TensorRT Python package (pip install tensorrt)") from err
    return tensorrt


def tensorrt_available() -> bool:
    try:
        _tensorrt()
    except BackendError:
        return False
    return torch.cuda.is_available()


def engine_path(onnx_digest: str, precision: str, max_batch: int, cuda: torch.device,
                cache_dir: str | Path | None = None) -> Path:
    """Engines only run on the TensorRT version and GPU model that built them, so both name the file."""
    trt = _tensorrt()
    gpu = _slug(torch.cuda.get_device_name(cuda))
    name = f"clrnet-{onnx_digest[:16]}-trt{trt.__version__}-{gpu}-{precision}-b{max_batch}.engine"
    return Path(cache_dir or default_cache_dir()) / name


def build_engine(onnx_path: Path, engine_file: Path, input_size: tuple[int, int], precision: str,
                 max_batch: int) -> None:
    """Parse the ONNX file and write a serialised engine for batches 1..max_batch (optimised for the
    largest); fp16 lets TensorRT pick half-precision kernels where they are faster, I/O stays fp32."""
    trt = _tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"{onnx_path}: TensorRT cannot parse the ONNX file: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":  # deprecated from TensorRT 10.12 in favour of strongly typed networks, still honoured
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shape = (3, *input_size)
    profile.set_shape(INPUT_NAME, (1, *shape), (max_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"{onnx_path}: TensorRT failed to build a {precision} engine (see its log above)")
    engine_file.write_bytes(bytes(serialized))


class TensorRTBackend(LaneBackend):
    """A TensorRT engine run with torch-allocated CUDA buffers on the current torch stream."""

    def __init__(self, engine_file: Path, input_size: tuple[int, int], device: torch.device,
                 precision: str, max_batch: int) -> None:
        trt = _tensorrt()
        super().__init__(input_size)
        self.device = device
        self.max_batch = max_batch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with torch.cuda.device(device):
            self.engine = runtime.deserialize_cuda_engine(engine_file.read_bytes())
            if self.engine is None:
                raise BackendError(f"{engine_file}: TensorRT cannot deserialise the engine")
            self.context = self.engine.create_execution_context()
        self._dtypes = {name: _torch_dtype(trt, self.engine.get_tensor_dtype(name))
                        for name in (INPUT_NAME, *OUTPUT_NAMES)}
        self.info = BackendInfo("tensorrt", f"{device} ({torch.cuda.get_device_name(device)})", precision,
                                f"TensorRT {trt.__version__}")

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if images.shape[0] > self.max_batch:
            raise ValueError(f"batch of {images.shape[0]} exceeds the engine's max_batch {self.max_batch}")
        with torch.cuda.device(self.device):
            return self._enqueue(images)

    def _enqueue(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stream = torch.cuda.current_stream(self.device)
        batch = torch.from_numpy(images).to(self.device, self._dtypes[INPUT_NAME]).contiguous()
        self.context.set_input_shape(INPUT_NAME, tuple(batch.shape))
        self.context.set_tensor_address(INPUT_NAME, batch.data_ptr())
        outputs = []
        for name in OUTPUT_NAMES:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtypes[name],
                              device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT failed to enqueue the engine")
        lanes, types, colors = (out.float().cpu().numpy() for out in outputs)  # .cpu() waits for the stream
        return lanes, types, colors


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise BackendError(f"engine tensor type {dtype} is not float32/float16")
    return table[dtype]


def tensorrt_engine(weights: str | Path, precision: str = "fp16", max_batch: int = 1,
                    device: str | None = None, cache_dir: str | Path | None = None
                    ) -> tuple[Path, tuple[int, int], torch.device]:
    """The cached engine for `weights` (built when missing or corrupt), the input size and the GPU."""
    cuda = _cuda_device(device)
    if cuda is None:
        raise UnsupportedCombination("the tensorrt backend needs a CUDA device")
    onnx_path, onnx_digest, input_size = onnx_file(weights, cache_dir)
    path = engine_path(onnx_digest, precision, max_batch, cuda, cache_dir)
    with torch.cuda.device(cuda):
        cached_file(path, lambda tmp: build_engine(onnx_path, tmp, input_size, precision, max_batch))
    return path, input_size, cuda


def build_engines(weights: Iterable[str | Path], precisions: Iterable[str] = ("fp16",), max_batch: int = 1,
                  device: str | None = None, cache_dir: str | Path | None = None) -> list[Path]:
    """Build (or verify) the engine of every model and precision ahead of time, e.g. while installing on
    the robot, so a node never spends minutes building at start-up. Returns the engine files."""
    paths = []
    for path in weights:
        for precision in precisions:
            if precision not in ("fp32", "fp16"):
                raise ValueError(f"TensorRT engines are fp32 or fp16, not {precision!r}")
            paths.append(tensorrt_engine(path, precision, max_batch, device, cache_dir)[0])
    return paths


def _auto_choice(config: BackendConfig) -> str:
    """The fastest backend available for the device and precision asked for (order in the module doc);
    onnxruntime then picks its CUDA provider when it has one and the CPU was not asked for."""
    on_gpu = config.device != "cpu" and torch.cuda.is_available()
    if on_gpu and config.precision != "int8" and tensorrt_available():
        return "tensorrt"
    if on_gpu and config.precision != "int8":
        return "torch"
    if config.precision == "fp16":
        raise UnsupportedCombination("fp16 needs tensorrt or torch on a CUDA device; torch sees none here "
                                     "(or device='cpu' was asked for)")
    return "onnxruntime"


def _resolved_precision(name: str, config: BackendConfig) -> str:
    """`auto` precision: fp16 on a GPU, int8 for onnxruntime on the CPU, else fp32."""
    if config.precision != "auto":
        return config.precision
    on_gpu = config.device != "cpu" and torch.cuda.is_available()
    if name in ("tensorrt", "torch") and on_gpu:
        return "fp16"
    if name == "onnxruntime" and (config.device == "cpu" or not _onnxruntime_has_cuda()):
        return "int8"
    return "fp32"


def _onnxruntime_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def open_lane_backend(weights: str | Path, config: BackendConfig = BackendConfig()) -> LaneBackend:
    """Load the CLRNet at `weights` into the backend `config` asks for (exporting and building cached
    files as needed)."""
    backend = _open(weights, config)
    backend.metadata = load_lane_model(weights)[1]
    return backend


def _open(weights: str | Path, config: BackendConfig) -> LaneBackend:
    name = _auto_choice(config) if config.backend == "auto" else config.backend
    precision = _resolved_precision(name, config)
    if precision == "int8" and name != "onnxruntime":
        raise UnsupportedCombination(f"int8 runs on onnxruntime only, not {name}")
    if name == "torch":
        model, _ = load_lane_model(weights)
        return TorchBackend(model, config.device, precision, config.channels_last, config.cuda_graph, config.threads)
    if config.channels_last or config.cuda_graph:
        raise UnsupportedCombination(f"channels_last and cuda_graph are torch options, not {name}'s")
    if name == "onnxruntime":
        if precision == "fp16":
            raise UnsupportedCombination("the onnxruntime backend runs fp32 or int8; use tensorrt or torch on "
                                         "CUDA for fp16")
        if precision == "int8":
            reduce_range = None if not config.int8_weight_bits else config.int8_weight_bits == 7
            onnx_path, input_size = int8_onnx_file(weights, config.cache_dir, reduce_range)
        else:
            onnx_path, _, input_size = onnx_file(weights, config.cache_dir)
        return OnnxRuntimeBackend(onnx_path, input_size, config.device, config.threads, config.cache_dir, precision)
    engine_file, input_size, cuda = tensorrt_engine(weights, precision, config.max_batch,
                                                    config.device, config.cache_dir)
    return TensorRTBackend(engine_file, input_size, cuda, precision, config.max_batch)
