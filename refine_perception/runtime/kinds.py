"""What the runtime needs to know about each kind of network we ship, found from the model file's format tag.

A kind is declared next to the task that uses it (lanes/network.py, instances/network.py, ...) and listed
here by import path, so opening a file imports only its own task's code.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
from torch import nn

from refine_perception.models.model_file import HEADER_KEY, ModelFileError

KINDS = {
    "refine_perception.clrnet/1": "refine_perception.lanes.network:CLRNET",
    "refine_perception.spatial_embeddings/1": "refine_perception.instances.network:SPATIAL_EMBEDDINGS",
    "refine_perception.discriminative/1": "refine_perception.instances.network:DISCRIMINATIVE",
    "refine_perception.lrn/1": "refine_perception.segmentation.network:LABEL_REFINEMENT",
    "refine_perception.bpr/1": "refine_perception.boundaries.network:BOUNDARY_REFINER",
}


@dataclass(frozen=True)
class NetworkKind:
    """One kind of network: how to load its files, what its graph's inputs and outputs are called, and how
    to quantise it.

    `calibration` gives int8 calibration batches (float32 (1, 3, H, W) in [0, 1]) from scenes of a seed no
    training or test split uses, named by `calibration_tag` in the cached file's name. `float_layers` are
    ONNX node-name prefixes left in fp32 by int8 quantisation. `int8_auto`: precision `auto` runs int8 on the
    CPU, set once held-out figures showed int8 keeps the kind's accuracy. `export_version` is raised whenever
    the exported graph changes for the same weights. Inputs are images unless `input_channels` and
    `input_range` say otherwise (a patch network takes an image and a mask channel in [-1, 1])."""

    name: str
    file_format: str
    load: Callable[[Path], tuple[nn.Module, dict[str, Any]]]
    output_names: tuple[str, ...]
    calibration: Callable[[nn.Module, dict[str, Any]], list[np.ndarray]]
    calibration_tag: str
    export_version: int = 1
    float_layers: tuple[str, ...] = ()
    int8_auto: bool = False
    input_name: str = "images"
    input_channels: int = 3  # the input batch is (B, input_channels, H, W) float32 ...
    input_range: tuple[float, float] = (0.0, 1.0)  # ... within this range (images: BGR / 255)


def rendered_calibration(render: Callable[[np.random.SeedSequence], np.ndarray], seed: int,
                         count: int) -> Callable[[nn.Module, dict[str, Any]], list[np.ndarray]]:
    """A kind's `calibration`: `count` BGR images `render(SeedSequence([seed, k]))`, resized as the nodes
    resize camera images to the network's input."""
    from refine_perception.models.preprocess import crop_resize, to_network

    def calibration(model: nn.Module, metadata: dict[str, Any]) -> list[np.ndarray]:
        return [to_network(crop_resize(render(np.random.SeedSequence([seed, k])), 0, model.input_size))
                for k in range(count)]

    return calibration


def file_format(path: Path) -> str:
    """The format tag in the model file's header, read without loading the weights."""
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get(HEADER_KEY, "null"))
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: cannot read safetensors file: {err}") from err
    if not isinstance(header, dict) or not isinstance(header.get("format"), str):
        raise ModelFileError(f"{path}: not a refine_perception model file (no format in its header)")
    return header["format"]


def kind_of(path: Path) -> NetworkKind:
    tag = file_format(path)
    if tag not in KINDS:
        raise ModelFileError(f"{path}: unknown model format {tag!r}; known: {sorted(KINDS)}")
    module, _, name = KINDS[tag].partition(":")
    kind: NetworkKind = getattr(importlib.import_module(module), name)
    return kind
