"""Boundary refiner model files: the safetensors + json pair of `refine_perception.models.model_file`; the
header carries the U-Net's channels, the patch side in image pixels and the network's input side."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from refine_perception.models.bpr.network import BoundaryRefiner
from refine_perception.models.model_file import load_model_file, save_model_file

FORMAT = "refine_perception.bpr/1"
ARCHITECTURE_KEYS = ("channels", "patch_size", "input_size")


def architecture(model: BoundaryRefiner) -> dict[str, Any]:
    return {"channels": list(model.channels), "patch_size": model.patch_size, "input_size": model.input_size[0]}


def save_bpr(path: str | Path, model: BoundaryRefiner, info: Mapping[str, Any] | None = None,
             dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write the weights (floating tensors as `dtype`) and the json with `info`; returns the json's content."""
    return save_model_file(path, model.state_dict(), {"format": FORMAT, **architecture(model)}, info or {}, dtype)


def _build(header: dict[str, Any]) -> BoundaryRefiner:
    channels = header["channels"]
    if not isinstance(channels, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in channels):
        raise ValueError(f"channels must be a list of integers, got {channels!r}")
    return BoundaryRefiner(channels, int(header["patch_size"]), int(header["input_size"]))


def load_bpr(path: str | Path, device: str | torch.device = "cpu") -> tuple[BoundaryRefiner, dict[str, Any]]:
    """The network stored at `path` in eval mode (fp32) and its metadata. Raises ModelFileError for a missing,
    damaged, edited or foreign file."""
    model, metadata = load_model_file(path, FORMAT, ARCHITECTURE_KEYS, "boundary refiner", _build)
    return model.to(device).eval(), metadata
