"""Discriminative-loss model files: the safetensors + json pair of `refine_perception.models.model_file`.

The header carries what the network cannot be rebuilt or used without: class count and names, embedding
size, width, whether coordinates feed the embedding decoder, the line channels (count and unit), the input
size images are resized to, and the
loss's margins delta_var and delta_dist, from which the predictor takes its clustering distances. Shipped
defaults are written in fp16, checkpoints in fp32.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from refine_perception.models.discriminative.network import DiscriminativeNet
from refine_perception.models.model_file import header_class_names, load_model_file, save_model_file

FORMAT = "refine_perception.discriminative/1"
ARCHITECTURE_KEYS = ("num_classes", "embedding_dim", "width", "coordinates", "line_channels", "line_unit_px",
                     "input_height", "input_width",
                     "class_names", "delta_var", "delta_dist")


def architecture(model: DiscriminativeNet) -> dict[str, Any]:
    return {
        "num_classes": model.num_classes,
        "embedding_dim": model.embedding_dim,
        "width": model.width,
        "coordinates": model.coordinates,
        "line_channels": model.line_channels,
        "line_unit_px": model.line_unit_px,
        "input_height": model.input_size[0],
        "input_width": model.input_size[1],
        "class_names": list(model.class_names),
        "delta_var": model.delta_var,
        "delta_dist": model.delta_dist,
    }


def file_header(model: DiscriminativeNet) -> dict[str, Any]:
    """The header a model file of `model` carries (what the predictor reads back from one)."""
    return {"format": FORMAT, **architecture(model)}


def save_discriminative(path: str | Path, model: DiscriminativeNet, info: Mapping[str, Any] | None = None,
                        dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write the weights (floating tensors as `dtype`) and the json with `info`; returns the json's content."""
    return save_model_file(path, model.state_dict(), file_header(model), info or {}, dtype)


def _build(header: dict[str, Any]) -> DiscriminativeNet:
    if not isinstance(header["coordinates"], bool):
        raise ValueError(f"coordinates must be true or false, got {header['coordinates']!r}")
    return DiscriminativeNet(int(header["num_classes"]), int(header["embedding_dim"]), float(header["width"]),
                             coordinates=header["coordinates"], line_channels=int(header["line_channels"]),
                             line_unit_px=float(header["line_unit_px"]),
                             input_size=(int(header["input_height"]), int(header["input_width"])),
                             class_names=header_class_names(header), delta_var=float(header["delta_var"]),
                             delta_dist=float(header["delta_dist"]))


def load_discriminative(path: str | Path,
                        device: str | torch.device = "cpu") -> tuple[DiscriminativeNet, dict[str, Any]]:
    """The network stored at `path` in eval mode (fp32) and its metadata (the json's over the header's).
    Raises ModelFileError for a missing, damaged, edited or foreign file."""
    model, metadata = load_model_file(path, FORMAT, ARCHITECTURE_KEYS, "discriminative", _build)
    return model.to(device).eval(), metadata
