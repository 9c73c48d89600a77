"""The boundary refiner as the runtime sees it: patches (image channels in [0, 1] and the mask in {-1, +1})
in, foreground logits out; int8 calibration from patches along the ground-truth boundaries of 16 sticks
scenes of a seed no training or test split uses. Precision `auto` stays fp32 on the CPU until held-out
figures show int8 keeps the refinement's gain."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from refine_perception.data.synthetic.sticks import render_sticks
from refine_perception.models.bpr.crop import crop_patches
from refine_perception.models.bpr.patches import propose_patches
from refine_perception.models.bpr.refine import image_tensor
from refine_perception.models.bpr.weights import FORMAT, load_bpr
from refine_perception.runtime.kinds import NetworkKind

CALIBRATION_SEED = 97
CALIBRATION_SCENES = 16
CALIBRATION_PATCHES = 4  # per scene, the first of its first stick's


def calibration_patches(model: nn.Module, metadata: dict[str, Any]) -> list[np.ndarray]:
    batches = []
    for k in range(CALIBRATION_SCENES):
        scene = render_sticks(np.random.SeedSequence([CALIBRATION_SEED, k]))
        mask = scene.instance_map == 0
        boxes = propose_patches(mask, model.patch_size)[:CALIBRATION_PATCHES]
        patches = crop_patches(image_tensor(scene.image), torch.from_numpy(mask), boxes, model.input_size[0])
        batches += [patch[None].numpy() for patch in patches]
    return batches


BOUNDARY_REFINER = NetworkKind(
    name="bpr",
    file_format=FORMAT,
    load=load_bpr,
    output_names=("logits",),
    calibration=calibration_patches,
    calibration_tag=f"cal{CALIBRATION_SCENES}x{CALIBRATION_PATCHES}s{CALIBRATION_SEED}",
    input_name="patches",
    input_channels=4,
    input_range=(-1.0, 1.0),
)
