"""Label Refinement Network model files: the safetensors + json pair of `refine_perception.models.model_file`.

The header carries what the network cannot be rebuilt or used without: the class names with the
Cityscapes label id of each (so label images can be published in ids every Cityscapes tool reads), the
instance classes, the widths, the input size, and the discriminative margins the clustering takes its
distances from."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from refine_perception.models.lrn.network import LabelRefinementNet
from refine_perception.models.model_file import header_class_names, load_model_file, save_model_file

FORMAT = "refine_perception.lrn/1"
ARCHITECTURE_KEYS = ("class_names", "label_ids", "instance_classes", "width", "decoder_channels", "embedding_dim",
                     "embedding_channels", "input_height", "input_width", "delta_var", "delta_dist")


def architecture(model: LabelRefinementNet) -> dict[str, Any]:
    return {
        "class_names": list(model.class_names),
        "label_ids": list(model.label_ids),
        "instance_classes": list(model.instance_classes),
        "width": model.width,
        "decoder_channels": model.decoder_channels,
        "embedding_dim": model.embedding_dim,
        "embedding_channels": model.embedding_channels,
        "input_height": model.input_size[0],
        "input_width": model.input_size[1],
        "delta_var": model.delta_var,
        "delta_dist": model.delta_dist,
    }


def save_lrn(path: str | Path, model: LabelRefinementNet, info: Mapping[str, Any] | None = None,
             dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write the weights (floating tensors as `dtype`) and the json with `info`; returns the json's content."""
    return save_model_file(path, model.state_dict(), {"format": FORMAT, **architecture(model)}, info or {}, dtype)


def _int_list(header: Mapping[str, Any], key: str) -> list[int]:
    values = header[key]
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{key} must be a list of integers, got {values!r}")
    return values


def _build(header: dict[str, Any]) -> LabelRefinementNet:
    instance_classes = header_class_names({"class_names": header["instance_classes"]})
    return LabelRefinementNet(header_class_names(header), _int_list(header, "label_ids"), instance_classes,
                              width=float(header["width"]), decoder_channels=int(header["decoder_channels"]),
                              embedding_dim=int(header["embedding_dim"]),
                              embedding_channels=int(header["embedding_channels"]),
                              input_size=(int(header["input_height"]), int(header["input_width"])),
                              delta_var=float(header["delta_var"]), delta_dist=float(header["delta_dist"]))


def load_lrn(path: str | Path, device: str | torch.device = "cpu") -> tuple[LabelRefinementNet, dict[str, Any]]:
    """The network stored at `path` in eval mode (fp32) and its metadata (the json's over the header's).
    Raises ModelFileError for a missing, damaged, edited or foreign file."""
    model, metadata = load_model_file(path, FORMAT, ARCHITECTURE_KEYS, "label refinement", _build)
    return model.to(device).eval(), metadata
