"""CLRNet model files: safetensors weights that carry the architecture, plus a readable metadata json.

`model.safetensors` holds the weights (fp16 for shipped defaults, fp32 for checkpoints) and, in its
header metadata, the architecture (backbone, input size, segmentation classes) and the pre-processing
(cut height, original size) needed to rebuild and feed the network, so the file alone is enough.
`model.json` next to it repeats that for people and adds the training data, metrics and the file's
SHA-256, which the loader checks: a truncated, edited or swapped weights file fails loudly instead of
producing confident garbage.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from refine_perception.models.clrnet.model import CLRNet

FORMAT = "refine_perception.clrnet/1"
ARCHITECTURE_KEYS = ("backbone", "input_height", "input_width", "num_seg_classes", "num_priors", "sample_points")


class ModelFileError(ValueError):
    """A model file that is missing, unreadable, tampered with or not a CLRNet of ours."""


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def architecture(model: CLRNet, backbone: str) -> dict[str, Any]:
    return {
        "backbone": backbone,
        "input_height": model.input_size[0],
        "input_width": model.input_size[1],
        "num_seg_classes": model.head.seg_decoder.conv.out_channels,
        "num_priors": model.head.prior_embeddings.num_embeddings,
        "sample_points": len(model.head.sample_rows),
    }


def save_lane_model(path: str | Path, model: CLRNet, backbone: str, info: dict[str, Any],
                    dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Write the weights (floating tensors cast to `dtype`) and the metadata json; returns the metadata.

    `info` adds pre-processing (cut_height, ori_width, ori_height) and anything descriptive (training
    data, metrics, cost). The json is written last, with the weights' hash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
        for key, value in model.state_dict().items()
    }
    header = {"format": FORMAT, **architecture(model, backbone), **{k: v for k, v in info.items() if k in
                                                                     ("cut_height", "ori_width", "ori_height")}}
    tmp = path.with_name(path.name + ".tmp")
    safetensors.torch.save_file(state, str(tmp), metadata={"refine": json.dumps(header)})
    tmp.replace(path)
    metadata = {**header, **info, "dtype": str(dtype).removeprefix("torch."), "file": path.name,
                "sha256": sha256(path), "bytes": path.stat().st_size}
    json_tmp = metadata_path(path).with_name(metadata_path(path).name + ".tmp")
    json_tmp.write_text(json.dumps(metadata, indent=2) + "\n")
    json_tmp.replace(metadata_path(path))
    return metadata


def metadata_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def load_lane_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[CLRNet, dict[str, Any]]:
    """The CLRNet stored at `path` in eval mode (fp32) and its metadata (the json's when present)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    meta_file = metadata_path(path)
    metadata: dict[str, Any] = {}
    if meta_file.is_file():
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
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            header = json.loads((handle.metadata() or {}).get("refine", "null"))
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: cannot read safetensors file: {err}") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a refine_perception CLRNet file (no '{FORMAT}' header)")
    missing = [key for key in ARCHITECTURE_KEYS if key not in header]
    if missing:
        raise ModelFileError(f"{path}: header lacks {missing}")
    try:
        model = CLRNet(header["backbone"], int(header["num_seg_classes"]),
                       (int(header["input_height"]), int(header["input_width"])),
                       int(header["num_priors"]), int(header["sample_points"]))
        model.load_state_dict({key: value.float() if value.is_floating_point() else value
                               for key, value in state.items()}, strict=True)
    except (RuntimeError, ValueError) as err:
        raise ModelFileError(f"{path}: weights do not fit the architecture in its header: {err}") from err
    if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
        raise ModelFileError(f"{path}: weights contain NaN or infinite values")
    return model.to(device).eval(), {**header, **metadata}
