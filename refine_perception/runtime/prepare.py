"""Everything a node would otherwise build at its first start (ONNX export, int8 files, TensorRT engines,
`auto`'s measurement), made ahead of time: on the robot at install time, or in a container image."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from refine_perception.runtime import openvino_backend, tensorrt_backend
from refine_perception.runtime.config import BackendError, RuntimeConfig
from refine_perception.runtime.export import onnx_file
from refine_perception.runtime.model import load_model
from refine_perception.runtime.quantize import int8_onnx_file, weight_bits_for_this_cpu
from refine_perception.runtime.select import open_model


def prepare(path: str | Path, config: RuntimeConfig, int8: bool = True, tensorrt: Sequence[str] = (),
            select: bool = False) -> Iterator[str]:
    """Build the files of the model at `path` from one load of it; yields a line per file or decision."""
    model = load_model(path)
    onnx_path, digest = onnx_file(model, config.cache_dir)
    yield f"{path}: {model.kind.name}, ONNX {onnx_path} (sha256 {digest[:16]})"
    if int8:
        bits = {config.int8_weight_bits or weight_bits_for_this_cpu()}
        if openvino_backend.available():
            bits.add(8)  # the file OpenVINO reads
        for weight_bits in sorted(bits):
            yield f"{path}: int8 ({weight_bits}-bit weights) {int8_onnx_file(model, config.cache_dir, weight_bits)}"
    if tensorrt and not tensorrt_backend.available():
        raise BackendError("TensorRT is not installed (pip install tensorrt on a machine with a CUDA GPU)")
    for precision in tensorrt:
        engine, _ = tensorrt_backend.engine_file(model, precision, config.max_batch, config.device, config.cache_dir)
        yield f"{path}: TensorRT {precision} engine {engine}"
    if select:
        network = open_model(model, config)
        timings = ", ".join(f"{name} {ms:.1f} ms" for name, ms in network.selection.items())
        yield (f"{path}: backend {config.backend} precision {config.precision} threads {config.threads} -> "
               f"{network.info}" + (f" (medians: {timings})" if timings else ""))
