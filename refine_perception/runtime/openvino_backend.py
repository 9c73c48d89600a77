"""OpenVINO on the CPU (Intel and AMD x86 alike): the ONNX export (fp32, or bf16 on CPUs with bfloat16
arithmetic) or the int8 QDQ file, whose quantise/dequantise pairs OpenVINO turns into int8 kernels.

The int8 file it reads has full 8-bit weights unless 7 are asked for (`int8_weight_bits`): oneDNN, under
OpenVINO, already halves the weight scale itself on CPUs without an int8 dot product, which 7-bit weights
would halve once more. Layers left in
floating point run in fp32 (OpenVINO would pick bf16 on AMX CPUs by default), so its int8 computes what
onnxruntime's does. Compiled models are cached next to the other derived files, which cuts a later start.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from refine_perception.runtime.cache import cache_dir
from refine_perception.runtime.config import BackendError, UnsupportedCombination
from refine_perception.runtime.model import LoadedModel
from refine_perception.runtime.network import BackendInfo, Network
from refine_perception.runtime.torch_backend import cpu_has_bf16


def available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def _core() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise BackendError("the openvino backend needs the openvino package (pip install openvino)") from err
    return openvino.Core()


class OpenVinoNetwork(Network):
    """`threads` sets this compiled model's inference threads (0: OpenVINO's choice, one per core); threads
    are not pinned to cores, since other nodes of the process run beside it."""

    def __init__(self, model: LoadedModel, onnx_path: Path, precision: str, device: str | None = None,
                 threads: int = 0, folder: str | Path | None = None) -> None:
        super().__init__(model)
        if device not in (None, "cpu"):
            raise UnsupportedCombination(f"the openvino backend runs on the CPU here, not {device}")
        if precision == "fp16" or (precision == "bf16" and not cpu_has_bf16()):
            raise UnsupportedCombination(f"openvino on this CPU runs fp32 or int8{' or bf16' if cpu_has_bf16() else ''}, "
                                         f"not {precision}")
        import openvino

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "ENABLE_CPU_PINNING": False, "CACHE_DIR": str(cache_dir(folder) / "openvino")}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = _core().compile_model(str(onnx_path), "CPU", config)
        except RuntimeError as err:
            raise BackendError(f"{onnx_path}: OpenVINO cannot compile the model: {err}") from err
        names = [output.get_any_name() for output in self.compiled.outputs]
        self._order = [names.index(name) for name in self.output_names]
        self.request = self.compiled.create_infer_request()
        self.info = BackendInfo("openvino", "cpu", precision, f"OpenVINO {openvino.__version__} CPU")

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: images})
        # the request reuses its output buffers on the next call, so these are copied out
        return [self.request.get_output_tensor(index).data.copy() for index in self._order]
