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
        self.input_channels = model.kind.input_channels
        self.input_range = model.kind.input_range
        self.metadata: dict[str, Any] = model.metadata
        self.output_names = model.kind.output_names
        self.selection: dict[str, float] = {}  # `auto`'s measured medians (ms) by backend, when it measured

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, ...]:
        """The outputs in `output_names` order, float32 and contiguous."""
        check_batch(images, self.input_size, self.input_channels, self.input_range)
        return tuple(np.ascontiguousarray(out, dtype=np.float32) for out in self._run(images))

    @abstractmethod
    def _run(self, images: np.ndarray) -> Sequence[np.ndarray]:
        """The outputs for a checked batch."""


def check_batch(images: Any, size: tuple[int, int], channels: int = 3,
                value_range: tuple[float, float] = (0.0, 1.0)) -> None:
    """Reject what would give silent garbage: wrong type, shape or range (0..255 pixels), NaNs."""
    if not isinstance(images, np.ndarray) or images.dtype != np.float32:
        raise TypeError(f"networks take a float32 numpy batch, got {getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[1:] != (channels, *size):
        raise ValueError(f"this network takes batches of shape (B, {channels}, {size[0]}, {size[1]}), got {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError("input batch contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < value_range[0] or high > value_range[1]:
        what = " (BGR / 255)" if value_range == (0.0, 1.0) else ""
        raise ValueError(f"input batch must lie in [{value_range[0]:g}, {value_range[1]:g}]{what}, got values in "
                         f"[{low:g}, {high:g}]")
