"""TensorRT engines (CUDA) built from the ONNX export, fp32 or fp16, cached by the ONNX file's hash, the
TensorRT version, the GPU model, the precision and the largest batch (an engine runs only where it was built).
A published CLRNet-R34 320x800 measurement on a Jetson Orin (TensorRT 10.3): 7.5 ms in fp16 against 39.3 ms
in PyTorch fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from refine_perception.runtime.cache import cache_dir, cached_file, slug
from refine_perception.runtime.config import BackendError, UnsupportedCombination
from refine_perception.runtime.devices import cuda_device
from refine_perception.runtime.export import onnx_file
from refine_perception.runtime.model import LoadedModel
from refine_perception.runtime.network import BackendInfo, Network

PRECISIONS = ("fp32", "fp16")


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as err:
        raise BackendError("the tensorrt backend needs the TensorRT Python package (pip install tensorrt)") from err
    return tensorrt


def available() -> bool:
    try:
        _tensorrt()
    except BackendError:
        return False
    return torch.cuda.is_available()


def build_engine(model: LoadedModel, onnx_path: Path, engine_file: Path, precision: str, max_batch: int) -> None:
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
    shape = (model.kind.input_channels, *model.input_size)
    profile.set_shape(model.kind.input_name, (1, *shape), (max_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"{onnx_path}: TensorRT failed to build a {precision} engine (see its log above)")
    engine_file.write_bytes(bytes(serialized))


def engine_file(model: LoadedModel, precision: str = "fp16", max_batch: int = 1, device: str | None = None,
                folder: str | Path | None = None) -> tuple[Path, torch.device]:
    """The cached engine (built when missing or damaged) and the GPU it runs on."""
    if precision not in PRECISIONS:
        raise UnsupportedCombination(f"TensorRT engines are fp32 or fp16 here, not {precision!r}")
    cuda = cuda_device(device)
    if cuda is None:
        raise UnsupportedCombination("the tensorrt backend needs a CUDA device")
    trt = _tensorrt()
    onnx_path, onnx_digest = onnx_file(model, folder)
    gpu = slug(torch.cuda.get_device_name(cuda))
    path = cache_dir(folder) / f"{model.kind.name}-{onnx_digest[:16]}-trt{trt.__version__}-{gpu}-{precision}-b{max_batch}.engine"
    with torch.cuda.device(cuda):
        cached_file(path, lambda tmp: build_engine(model, onnx_path, tmp, precision, max_batch))
    return path, cuda


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise BackendError(f"engine tensor type {dtype} is not float32/float16")
    return table[dtype]


class TensorRTNetwork(Network):
    """An engine run with torch-allocated CUDA buffers on the current torch stream."""

    def __init__(self, model: LoadedModel, precision: str = "fp16", max_batch: int = 1, device: str | None = None,
                 folder: str | Path | None = None) -> None:
        super().__init__(model)
        path, self.device = engine_file(model, precision, max_batch, device, folder)
        trt = _tensorrt()
        self.max_batch = max_batch
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with torch.cuda.device(self.device):
            self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise BackendError(f"{path}: TensorRT cannot deserialise the engine")
            self.context = self.engine.create_execution_context()
        self._dtypes = {name: _torch_dtype(trt, self.engine.get_tensor_dtype(name))
                        for name in (self.kind.input_name, *self.output_names)}
        self.info = BackendInfo("tensorrt", f"{self.device} ({torch.cuda.get_device_name(self.device)})", precision,
                                f"TensorRT {trt.__version__}")

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        if images.shape[0] > self.max_batch:
            raise ValueError(f"batch of {images.shape[0]} exceeds the engine's max_batch {self.max_batch}")
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)
            name = self.kind.input_name
            batch = torch.from_numpy(images).to(self.device, self._dtypes[name]).contiguous()
            self.context.set_input_shape(name, tuple(batch.shape))
            self.context.set_tensor_address(name, batch.data_ptr())
            outputs = []
            for output in self.output_names:
                out = torch.empty(tuple(self.context.get_tensor_shape(output)), dtype=self._dtypes[output],
                                  device=self.device)
                self.context.set_tensor_address(output, out.data_ptr())
                outputs.append(out)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise BackendError("TensorRT failed to enqueue the engine")
            return [out.float().cpu().numpy() for out in outputs]  # .cpu() waits for the stream
