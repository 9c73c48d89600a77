"""CLRNet as the runtime sees it: its file format, graph outputs and int8 calibration.

int8 runs the network more than twice as fast as fp32 on a 2-core Xeon with VNNI/AMX, at the same CULane F1
within noise (figures for the shipped weights in the README, rerun with `refine-train evaluate lanes --num 300
--precision fp32|int8`). The head's last layers (the regression, classification, type and colour stacks) stay
in fp32: quantising them too saved almost nothing and cost 8 points of CULane F1@75. Calibration uses 32
scenes of a seed no training, validation or test split uses, rendered in the model's framing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from refine_perception.data.synthetic.road import CULANE_HORIZON, road_sample
from refine_perception.models.clrnet.weights import FORMAT, load_lane_model
from refine_perception.models.preprocess import crop_resize, to_network
from refine_perception.runtime.kinds import NetworkKind

CALIBRATION_SEED = 97
CALIBRATION_IMAGES = 32
CULANE_SIZE = (1640, 590)
CULANE_CUT_HEIGHT = 270


def calibration_images(model: nn.Module, metadata: dict[str, Any]) -> list[np.ndarray]:
    """float32 (1, 3, H, W) network inputs of synthetic CULane-framed scenes."""
    width, height = CULANE_SIZE
    cut_height = int(metadata.get("cut_height", CULANE_CUT_HEIGHT))
    return [to_network(crop_resize(road_sample(CALIBRATION_SEED, k, width, height, horizon=CULANE_HORIZON).image,
                                   cut_height, model.input_size))
            for k in range(CALIBRATION_IMAGES)]


CLRNET = NetworkKind(
    name="clrnet",
    file_format=FORMAT,
    load=load_lane_model,
    output_names=("lanes", "types", "colors"),
    calibration=calibration_images,
    calibration_tag=f"cal{CALIBRATION_IMAGES}s{CALIBRATION_SEED}",
    export_version=3,  # 2: gathers, not GridSample; 3: the 9x1 convs as Conv2d
    float_layers=("/head/reg", "/head/cls", "/head/type", "/head/color"),
    int8_auto=True,
)
