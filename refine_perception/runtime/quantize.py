"""int8 for the CPU: onnxruntime static QDQ quantisation of the ONNX export, calibrated on scenes of the
model's own task (its kind says which), per-channel s8 weights and u8 activations.

On x86 CPUs without an int8 dot product (AVX2 only: no AVX-512 VNNI, AVX-VNNI or AMX) onnxruntime's kernel
adds pairs of u8 x s8 products in 16 bits, which full-range weights can saturate; there the weights are
quantised to 7 bits (`reduce_range`): 2 x 255 x 64 < 32767, so such a CPU computes what a VNNI one does with
the same file. The weight range names the cached file. OpenVINO runs the same QDQ file.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from refine_perception.core.cpu import has_int8_dot_product
from refine_perception.runtime.cache import cached_file
from refine_perception.runtime.config import BackendError
from refine_perception.runtime.export import onnx_file
from refine_perception.runtime.model import LoadedModel

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


def weight_bits_for_this_cpu() -> int:
    return 8 if has_int8_dot_product() else 7


def int8_onnx_file(model: LoadedModel, folder: str | Path | None = None, weight_bits: int = 0) -> Path:
    """The cached int8 (QDQ) version of the model's ONNX export; `weight_bits` 0: this CPU's (see above)."""
    bits = weight_bits or weight_bits_for_this_cpu()
    source, digest = onnx_file(model, folder)
    suffix = "-w7" if bits == 7 else ""
    # what else shapes the file: the ops quantised and the layers left in float
    settings = hashlib.sha256(repr((QUANTIZED_OPS, model.kind.float_layers)).encode()).hexdigest()[:6]
    path = source.with_name(f"{source.stem}-int8{suffix}-{model.kind.calibration_tag}-q{settings}-{digest[:8]}.onnx")

    def build(tmp: Path) -> None:
        quantize_onnx(source, tmp, model.kind.calibration(model.module, model.metadata), model.kind.input_name,
                      model.kind.float_layers, reduce_range=bits == 7)

    try:
        cached_file(path, build)
    except (RuntimeError, ValueError) as err:  # calibration or the quantiser failed: a backend failure
        raise BackendError(f"{model.path}: int8 quantisation failed: {err}") from err
    return path


def quantize_onnx(source: Path, target: Path, images: list[np.ndarray], input_name: str,
                  float_layers: tuple[str, ...] = (), reduce_range: bool = False) -> None:
    """Write the int8 QDQ version of the fp32 ONNX model `source` to `target`, leaving the nodes whose names
    start with one of `float_layers` in fp32."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(images)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.remaining, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        nodes = [node.name for node in onnx.load(str(prepared)).graph.node
                 if node.op_type in QUANTIZED_OPS and not (float_layers and node.name.startswith(float_layers))]
        quantize_static(str(prepared), str(target), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                        reduce_range=reduce_range)
