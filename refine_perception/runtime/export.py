"""ONNX export of any of our networks, cached under the weights' hash, opset, kind's export version and
input size."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from refine_perception.runtime.cache import cache_dir, cached_file
from refine_perception.runtime.config import BackendError
from refine_perception.runtime.model import LoadedModel

OPSET = 17


def export_onnx(model: LoadedModel, path: Path, opset: int = OPSET) -> None:
    """Trace the eval-mode network on the CPU in fp32 with a free batch axis."""
    kind = model.kind
    example = torch.from_numpy(model.example_batch())
    axes = {name: {0: "batch"} for name in (kind.input_name, *kind.output_names)}
    with warnings.catch_warnings():  # the legacy exporter's notices, not problems of this model
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model.module, (example,), str(path), opset_version=opset, input_names=[kind.input_name],
                          output_names=list(kind.output_names), dynamic_axes=axes, dynamo=False)


def onnx_file(model: LoadedModel, folder: str | Path | None = None, opset: int = OPSET) -> tuple[Path, str]:
    """The cached ONNX export (exported when missing, stale or damaged) and its SHA-256."""
    height, width = model.input_size
    name = f"{model.kind.name}-{model.digest[:16]}-opset{opset}-v{model.kind.export_version}-{height}x{width}.onnx"
    path = cache_dir(folder) / name
    try:
        return path, cached_file(path, lambda tmp: export_onnx(model, tmp, opset))
    except (RuntimeError, ValueError) as err:  # the exporter's own errors, reported like any backend failure
        raise BackendError(f"{model.path}: ONNX export failed: {err}") from err
