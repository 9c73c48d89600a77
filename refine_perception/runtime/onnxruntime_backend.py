"""onnxruntime on the cached ONNX export (fp32) or its int8 QDQ version, all graph optimisations on.
Its CUDA and TensorRT providers are used where onnxruntime-gpu is installed and the CPU was not asked for,
independently of torch (onnxruntime-gpu works next to a CPU-only torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refine_perception.runtime.cache import cache_dir
from refine_perception.runtime.config import BackendError
from refine_perception.runtime.model import LoadedModel
from refine_perception.runtime.network import BackendInfo, Network


def has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def providers(device: str | None, folder: str | Path | None) -> list[Any]:
    """onnxruntime's TensorRT and CUDA providers where installed (unless the CPU is asked for), CPU last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu" or (device is None and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendError(f"onnxruntime on {device} needs onnxruntime-gpu; providers here: {available}")
    index = int(device.partition(":")[2] or 0) if device else 0
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        chosen.append(("TensorrtExecutionProvider", {"device_id": index, "trt_engine_cache_enable": True,
                                                     "trt_engine_cache_path": str(cache_dir(folder) / "ort-tensorrt")}))
    chosen.append(("CUDAExecutionProvider", {"device_id": index}))
    chosen.append("CPUExecutionProvider")
    return chosen


class OnnxRuntimeNetwork(Network):
    """`threads` sets this session's intra-op pool (0: one thread per core); each session has its own."""

    def __init__(self, model: LoadedModel, onnx_path: Path, precision: str, device: str | None = None,
                 threads: int = 0, folder: str | Path | None = None) -> None:
        import onnxruntime as ort

        super().__init__(model)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=providers(device, folder))
        except Exception as err:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise BackendError(f"{onnx_path}: onnxruntime cannot load the model: {err}") from err
        active = self.session.get_providers()[0]
        if device not in (None, "cpu") and active == "CPUExecutionProvider":
            # onnxruntime falls back to the CPU when its CUDA provider cannot load (cuDNN missing, ...)
            raise BackendError(f"onnxruntime could not use {device} (its CUDA provider failed to load); "
                               "see onnxruntime's log above")
        self.info = BackendInfo("onnxruntime", "cpu" if active == "CPUExecutionProvider" else device or "cuda:0",
                                precision, f"onnxruntime {ort.__version__} {active}")

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(self.output_names), {self.kind.input_name: images})
