"""Image backbones returning stride-8/16/32 feature maps, with an ``out_channels`` tuple for the neck."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from refine_perception.models.backbones.dla import DLA34
from refine_perception.models.backbones.resnet import resnet18, resnet34

_BUILDERS: dict[str, Callable[[], nn.Module]] = {"resnet18": resnet18, "resnet34": resnet34, "dla34": DLA34}


def build_backbone(name: str) -> nn.Module:
    """Randomly initialised backbone by config name; load ImageNet weights separately if wanted."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_BUILDERS)}")
    return _BUILDERS[name]()
