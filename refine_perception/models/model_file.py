"""Model files shared by every network we ship: safetensors weights plus a readable metadata json.

The weights file carries, in its safetensors header metadata (key "refine"), a format tag and the
architecture needed to rebuild the network, so the file alone is enough to load. The json next to it
repeats that for people, adds descriptive extras (training data, metrics) and the weights' SHA-256,
which the loader checks: a truncated, edited or swapped weights file fails loudly instead of producing
confident garbage. safetensors rather than pickles, so loading a file never runs code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import safetensors
import safetensors.torch
import torch
from torch import nn

HEADER_KEY = "refine"

ModelT = TypeVar("ModelT", bound=nn.Module)


class ModelFileError(ValueError):
    """A model file that is missing, unreadable, tampered with or not the kind of model asked for."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_model_file(path: str | Path, state: Mapping[str, torch.Tensor], header: dict[str, Any],
                    info: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write `state` (floating tensors cast to `dtype`) with `header` in the file, then the json:
    header, `info`, dtype, file name, SHA-256 and size. Both are written to a temporary name and moved
    into place, the json last, so a reader never sees a half-written pair. Returns the json's content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
               for key, value in state.items()}
    tmp = path.with_name(path.name + ".tmp")
    safetensors.torch.save_file(tensors, str(tmp), metadata={HEADER_KEY: json.dumps(header)})
    tmp.replace(path)
    metadata = {**header, **info, "dtype": str(dtype).removeprefix("torch."), "file": path.name,
                "sha256": sha256(path), "bytes": path.stat().st_size}
    json_tmp = metadata_path(path).with_name(metadata_path(path).name + ".tmp")
    json_tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    json_tmp.replace(metadata_path(path))
    return metadata


def _read_metadata(path: Path) -> dict[str, Any]:
    """The json next to `path` ({} when there is none), after checking the weights' hash against it."""
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        return {}
    try:
        metadata = json.loads(meta_file.read_text())
    except ValueError as err:
        raise ModelFileError(f"{meta_file}: not valid json: {err}") from err
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{meta_file}: expected a json object, got {type(metadata).__name__}")
    expected = metadata.get("sha256")
    if expected is not None and sha256(path) != expected:
        raise ModelFileError(f"{path}: SHA-256 differs from {meta_file.name}; the weights file was changed "
                             "or replaced after it was written")
    return metadata


def header_class_names(header: Mapping[str, Any]) -> list[str]:
    """The header's class names, checked: a ValueError (a bad file, to `load_model_file`) unless a list of strings."""
    names = header["class_names"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"class_names must be a list of strings, got {names!r}")
    return names


def load_model_file(path: str | Path, file_format: str, required: Sequence[str], kind: str,
                    build: Callable[[dict[str, Any]], ModelT]) -> tuple[ModelT, dict[str, Any]]:
    """The network stored at `path` in eval mode (fp32) and its metadata (the json's over the header's).

    The header must carry `file_format` and the `required` keys; `build` makes the untrained network
    from it (a ValueError or RuntimeError there, like weights that do not fit, means a bad file);
    `kind` names the model in messages."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    metadata = _read_metadata(path)
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get(HEADER_KEY, "null"))
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: cannot read safetensors file: {err}") from err
    if not isinstance(header, dict) or header.get("format") != file_format:
        raise ModelFileError(f"{path}: not a refine_perception {kind} file (no '{file_format}' header)")
    missing = [key for key in required if key not in header]
    if missing:
        raise ModelFileError(f"{path}: header lacks {missing}")
    try:
        model = build(header)
        model.load_state_dict({key: value.float() if value.is_floating_point() else value
                               for key, value in state.items()}, strict=True)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: weights do not fit the architecture in its header: {err}") from err
    if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
        raise ModelFileError(f"{path}: weights contain NaN or infinite values")
    # the hash only ever comes from the json, which was checked against the file: a header claiming one
    # (another model's, say) must not name this file's derived caches
    header.pop("sha256", None)
    return model.eval(), {**header, **metadata}
