"""SpatialEmbeddings model files: the safetensors + json pair of `refine_perception.models.model_file`.

The header carries everything the network cannot be rebuilt or fed without: class count and names,
sigma count, width, the input size images are resized to and the embedding scale (pixels per unit),
which the clustering must share with training. Shipped defaults are written in fp16 (half the size;
the outputs move by about the rounding of the weights), checkpoints in fp32.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from refine_perception.models.model_file import header_class_names, load_model_file, save_model_file
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet

FORMAT = "refine_perception.spatial_embeddings/1"
ARCHITECTURE_KEYS = ("num_classes", "n_sigma", "width", "input_height", "input_width", "pixels_per_unit",
                     "class_names")


def architecture(model: SpatialEmbeddingNet) -> dict[str, Any]:
    return {
        "num_classes": model.num_classes,
        "n_sigma": model.n_sigma,
        "width": model.width,
        "input_height": model.input_size[0],
        "input_width": model.input_size[1],
        "pixels_per_unit": model.pixels_per_unit,
        "class_names": list(model.class_names),
    }


def file_header(model: SpatialEmbeddingNet) -> dict[str, Any]:
    """The header a model file of `model` carries (what the predictor reads back from one)."""
    return {"format": FORMAT, **architecture(model)}


def save_spatial_embeddings(path: str | Path, model: SpatialEmbeddingNet, info: Mapping[str, Any] | None = None,
                            dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write the weights (floating tensors as `dtype`) and the json with `info` (training data, metrics,
    cost); returns the json's content."""
    return save_model_file(path, model.state_dict(), file_header(model), info or {}, dtype)


def _build(header: dict[str, Any]) -> SpatialEmbeddingNet:
    return SpatialEmbeddingNet(int(header["num_classes"]), int(header["n_sigma"]), float(header["width"]),
                               input_size=(int(header["input_height"]), int(header["input_width"])),
                               pixels_per_unit=float(header["pixels_per_unit"]),
                               class_names=header_class_names(header))


def load_spatial_embeddings(path: str | Path,
                            device: str | torch.device = "cpu") -> tuple[SpatialEmbeddingNet, dict[str, Any]]:
    """The network stored at `path` in eval mode (fp32) and its metadata (the json's over the header's).
    Raises ModelFileError for a missing, damaged, edited or foreign file."""
    model, metadata = load_model_file(path, FORMAT, ARCHITECTURE_KEYS, "SpatialEmbeddings", _build)
    return model.to(device).eval(), metadata
