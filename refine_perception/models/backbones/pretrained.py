"""Load ImageNet-pretrained backbone weights from a local checkpoint file.

Both torchvision's ResNet checkpoints and the official / timm DLA-34 checkpoints already use this
package's parameter names, so loading needs no renaming: only container unwrapping, ``module.``
stripping and dropping the entries a backbone lists in ``ignored_checkpoint_prefixes``.
Loading is strict otherwise, because a silently partial load (CLRNet's ``strict=False``) hides
wrong-architecture checkpoints.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

_CONTAINER_KEYS = ("state_dict", "model")
_OPTIONAL_SUFFIX = "num_batches_tracked"  # absent from older torchvision checkpoints


class PretrainedWeightsError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


@dataclass(frozen=True)
class LoadReport:
    loaded: int
    ignored: tuple[str, ...]


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:8])
    return shown if len(keys) <= 8 else f"{shown} (+{len(keys) - 8} more)"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt`` file, unwrapped and without ``module.`` prefixes.

    Pickled files are read with ``weights_only=True`` so a checkpoint cannot run code on load.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: checkpoint file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            content: object = safetensors.torch.load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt"):
            content = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise PretrainedWeightsError(f"{path}: unsupported checkpoint type {suffix!r} "
                                         "(expected .safetensors, .pth or .pt)")
    except (pickle.UnpicklingError, safetensors.SafetensorError, RuntimeError, EOFError) as exc:
        raise PretrainedWeightsError(f"{path}: cannot read checkpoint: {exc}") from exc
    while isinstance(content, dict):
        container = next((k for k in _CONTAINER_KEYS if isinstance(content.get(k), dict)), None)
        if container is None:
            break
        content = content[container]
    if not isinstance(content, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict, found {type(content).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in content.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise PretrainedWeightsError(f"{path}: entry {key!r} is {type(value).__name__}, not a tensor")
        state[key.removeprefix("module.")] = value
    return state


def load_imagenet_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy a checkpoint's weights into ``model``; every model key must be present with its shape."""
    source = read_state_dict(path)
    target = model.state_dict()
    prefixes: tuple[str, ...] = getattr(model, "ignored_checkpoint_prefixes", ())
    ignored = sorted(k for k in source if k.startswith(prefixes))
    kept = {k: v for k, v in source.items() if not k.startswith(prefixes)}
    missing = sorted(k for k in target if k not in kept and not k.endswith(_OPTIONAL_SUFFIX))
    unexpected = sorted(k for k in kept if k not in target)
    if missing or unexpected:
        raise PretrainedWeightsError(f"{path}: checkpoint does not match {type(model).__name__}: "
                                     f"missing keys [{_preview(missing)}], unexpected keys [{_preview(unexpected)}]")
    for key, value in kept.items():
        if value.shape != target[key].shape:
            raise PretrainedWeightsError(f"{path}: {key} has shape {tuple(value.shape)}, "
                                         f"model expects {tuple(target[key].shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise PretrainedWeightsError(f"{path}: {key} contains NaN or infinite values")
    model.load_state_dict(kept, strict=False)
    return LoadReport(loaded=len(kept), ignored=tuple(ignored))
