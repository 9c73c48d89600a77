"""A model file read once: the network, its metadata and its hash, shared by every export and backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from refine_perception.models.model_file import sha256
from refine_perception.runtime.kinds import NetworkKind, kind_of


@dataclass(frozen=True)
class LoadedModel:
    """The fp32 eval-mode network of `path` and what names its derived files (`digest`: the weights' SHA-256)."""

    path: Path
    kind: NetworkKind
    module: nn.Module
    metadata: dict[str, Any]
    digest: str

    @property
    def input_size(self) -> tuple[int, int]:
        height, width = self.module.input_size
        return int(height), int(width)

    def example_batch(self, seed: int = 0) -> np.ndarray:
        """A random (1, C, H, W) float32 batch within the kind's input range (exports, timings)."""
        low, high = self.kind.input_range
        rng = np.random.default_rng(seed)
        return (low + (high - low) * rng.random((1, self.kind.input_channels, *self.input_size))).astype(np.float32)


def load_model(path: str | Path) -> LoadedModel:
    """Raises ModelFileError for a missing, damaged, edited or unknown file."""
    path = Path(path)
    kind = kind_of(path)
    module, metadata = kind.load(path)
    # the json's hash was checked against the file by the loader; without a json the file is hashed here
    return LoadedModel(path, kind, module.float().cpu().eval(), metadata, metadata.get("sha256") or sha256(path))
