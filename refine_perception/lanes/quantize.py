"""int8 CLRNet for onnxruntime on the CPU: static QDQ quantisation calibrated on synthetic road scenes.

int8 runs the network more than twice as fast as fp32 on a 2-core Xeon with VNNI/AMX, at the same CULane
F1 within noise (figures for the shipped weights in the README, rerun with `refine-train evaluate lanes
--num 300 --precision fp32|int8`). The head's last layers (the regression, classification, type and colour
stacks) stay in fp32: quantising them too saved almost nothing and cost 8 points of CULane F1@75.

Calibration uses scenes of a seed no training, validation or test split uses, rendered in the model's
framing, so the file depends only on the model, the constants here and the weight range (they name the
cached file). On x86 CPUs without an int8 dot product (AVX2 only: no VNNI, no AMX) the weights are
quantised to 7 bits (`reduce_range`), which onnxruntime recommends there: its AVX2 kernel sums pairs of
u8 x s8 products in 16 bits, and full-range weights can saturate that sum (see core/cpu.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from refine_perception.data.synthetic.road import CULANE_HORIZON, road_sample
from refine_perception.models.clrnet.preprocess import crop_resize, to_network

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
FLOAT_LAYERS = ("/head/reg", "/head/cls", "/head/type", "/head/color")
CALIBRATION_SEED = 97
CALIBRATION_IMAGES = 32
CULANE_SIZE = (1640, 590)


def calibration_images(input_size: tuple[int, int], cut_height: int, num: int = CALIBRATION_IMAGES,
                       seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """float32 (1, 3, H, W) network inputs of `num` synthetic CULane-framed scenes."""
    width, height = CULANE_SIZE
    return [to_network(crop_resize(road_sample(seed, k, width, height, horizon=CULANE_HORIZON).image, cut_height,
                                   input_size)) for k in range(num)]


def quantize_onnx(source: Path, target: Path, images: list[np.ndarray], input_name: str,
                  reduce_range: bool = False) -> None:
    """Write the int8 QDQ version of the fp32 ONNX model `source` to `target` (7-bit weights with
    `reduce_range`)."""
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
                 if node.op_type in QUANTIZED_OPS and not node.name.startswith(FLOAT_LAYERS)]
        quantize_static(str(prepared), str(target), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                        reduce_range=reduce_range)
