"""CLRNet model files: safetensors weights that carry the architecture, plus a readable metadata json.

`model.safetensors` holds the weights (fp16 for shipped defaults, fp32 for checkpoints) and, in its
header metadata, the architecture (backbone, input size, segmentation classes) and the pre-processing
(cut height, original size) needed to rebuild and feed the network, so the file alone is enough.
`model.json` next to it repeats that for people and adds the training data, metrics and the file's
SHA-256, which the loader checks (see `refine_perception.models.model_file`, shared by all our models).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.model_file import ModelFileError, load_model_file, save_model_file, sha256

__all__ = ["ModelFileError", "architecture", "load_lane_model", "save_lane_model", "sha256"]

FORMAT = "refine_perception.clrnet/1"
ARCHITECTURE_KEYS = ("backbone", "input_height", "input_width", "num_seg_classes", "num_priors", "sample_points")
# what names and shapes the tensors: weights load into any model that agrees on these (the input size and
# the pooling change none, since priors and sample points are fractions of the image)
TENSOR_KEYS = ("backbone", "num_seg_classes", "num_priors", "sample_points")
PREPROCESSING_KEYS = ("cut_height", "ori_width", "ori_height")


def architecture(model: CLRNet, backbone: str) -> dict[str, Any]:
    return {
        "backbone": backbone,
        "input_height": model.input_size[0],
        "input_width": model.input_size[1],
        "num_seg_classes": model.head.seg_decoder.conv.out_channels,
        "num_priors": model.head.prior_embeddings.num_embeddings,
        "sample_points": len(model.head.sample_rows),
        "pooling": model.head.pooling,
    }


def save_lane_model(path: str | Path, model: CLRNet, backbone: str, info: dict[str, Any],
                    dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write the weights (floating tensors cast to `dtype`) and the metadata json; returns the metadata.

    `info` adds pre-processing (cut_height, ori_width, ori_height) and anything descriptive (training
    data, metrics, cost). The json is written last, with the weights' hash.
    """
    header = {"format": FORMAT, **architecture(model, backbone),
              **{k: v for k, v in info.items() if k in PREPROCESSING_KEYS}}
    return save_model_file(path, model.state_dict(), header, info, dtype)


def _build(header: dict[str, Any]) -> CLRNet:
    return CLRNet(header["backbone"], int(header["num_seg_classes"]),
                  (int(header["input_height"]), int(header["input_width"])),
                  int(header["num_priors"]), int(header["sample_points"]),
                  header.get("pooling", "line"))  # files written before the option pooled as the paper


def load_lane_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[CLRNet, dict[str, Any]]:
    """The CLRNet stored at `path` in eval mode (fp32) and its metadata (the json's when present)."""
    model, metadata = load_model_file(path, FORMAT, ARCHITECTURE_KEYS, "CLRNet", _build)
    return model.to(device).eval(), metadata
