"""The callable every backend gives: a float32 (B, 3, H, W) batch in [0, 1] in, the graph's outputs out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from refine_perception.runtime.model import LoadedModel


@dataclass(frozen=True)
class BackendInfo:
    """What runs the model, for /diagnostics and logs."""

    name: str
    device: str
    precision: str
    provider: str

    def as_dict(self) -> dict[str, str]:
        return {"backend": self.name, "device": self.device, "precision": self.precision, "provider": self.provider}

    def __str__(self) -> str:
        return f"{self.name} {self.device} {self.precision} ({self.provider})"


class Network(ABC):
    """One loaded model on one backend. Not thread-safe: give each thread its own."""

    info: BackendInfo

    def __init__(self, model: LoadedModel) -> None:
        self.kind = model.kind
        self.input_size = model.input_size
        self.metadata: dict[str, Any] = model.metadata
        self.output_names = model.kind.output_names
        self.selection: dict[str, float] = {}  # `auto`'s measured medians (ms) by backend, when it measured

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        """The outputs in `output_names` order, float32 and contiguous."""
        check_batch(images, self.input_size)
        return tuple(np.ascontiguousarray(out, dtype=np.float32) for out in self._run(images))

    @abstractmethod
    def _run(self, images: np.ndarray) -> Sequence[np.ndarray]:
        """The outputs for a checked batch."""


def check_batch(images: Any, size: tuple[int, int]) -> None:
    """Reject what would give silent garbage: wrong type, shape or range (0..255 pixels), NaNs."""
    if not isinstance(images, np.ndarray) or images.dtype != np.float32:
        raise TypeError(f"networks take a float32 numpy batch, got {getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[1:] != (3, *size):
        raise ValueError(f"this network takes images of shape (B, 3, {size[0]}, {size[1]}), got {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError("input batch contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"input batch must lie in [0, 1] (BGR / 255), got values in [{low:g}, {high:g}]")
