"""Which device a config asks for, decided the same way by every backend."""

from __future__ import annotations

import torch

from refine_perception.runtime.config import BackendError


def cuda_device(device: str | None) -> torch.device | None:
    """The CUDA device `device` names (or the default one when there is a GPU), None for the CPU."""
    if device == "cpu" or (device is None and not torch.cuda.is_available()):
        return None
    if not torch.cuda.is_available():
        raise BackendError(f"device {device!r} asked for, but torch sees no CUDA device")
    cuda = torch.device(device or "cuda:0")
    if (cuda.index or 0) >= torch.cuda.device_count():
        raise BackendError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return cuda


def on_gpu(device: str | None) -> bool:
    return device != "cpu" and torch.cuda.is_available()
