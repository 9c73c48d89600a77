"""How to run a network: the one settings object every backend, node and command shares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


class BackendError(RuntimeError):
    """A backend that cannot run here (missing library or GPU) or failed to build."""


class UnsupportedCombination(ValueError):
    """A backend, device and precision that do not go together (e.g. fp16 on the CPU)."""


@dataclass(frozen=True)
class RuntimeConfig:
    """How to run a model file.

    `device` None means the first GPU when there is one, else the CPU. `threads` 0 lets the backend choose
    (onnxruntime and OpenVINO: every core); any other count holds for this network: its onnxruntime session
    or OpenVINO compiled model, or torch's count on the calling thread during each call (put back after).
    `precision` auto is fp16 on a GPU; on the CPU int8 where the model's kind has shown int8 holds its
    accuracy, else fp32. `int8_weight_bits` 0 picks the onnxruntime int8 weights for this CPU (7
    bits without an int8 dot product, else 8); 7 or 8 forces them, e.g. to measure on one machine what the
    other kind of CPU runs. `max_batch` bounds TensorRT's optimisation profile; `channels_last` and
    `cuda_graph` are options of torch on CUDA."""

    backend: str = "auto"
    device: str | None = None
    precision: str = "auto"
    cache_dir: str | Path | None = None
    threads: int = 0
    channels_last: bool = False
    cuda_graph: bool = False
    max_batch: int = 1
    int8_weight_bits: int = 0

    @classmethod
    def of_node(cls, backend: str, device: str, precision: str, threads: int) -> RuntimeConfig:
        """The config of a node's runtime parameters (an empty `device` means the default one)."""
        return cls(backend=backend, device=device or None, precision=precision, threads=threads)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.int8_weight_bits not in (0, 7, 8):
            raise ValueError(f"int8_weight_bits must be 0 (this CPU's), 7 or 8, got {self.int8_weight_bits}")
