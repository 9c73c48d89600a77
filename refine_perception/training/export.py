"""Turn a run's weights into shipped default weights: fp16 safetensors (half the bytes; the network still
runs in fp32 after loading) with the metadata json, to which held-out figures can be added. Lane (CLRNet),
instance (SpatialEmbeddings, discriminative), street (label refinement) and boundary refiner files are told
apart by the format tag their json carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from refine_perception.models.clrnet.weights import ModelFileError, load_lane_model, save_lane_model
from refine_perception.models.model_file import metadata_path
from refine_perception.training.bpr_task import MODEL_FILES as BPR_FILES
from refine_perception.training.instance_task import MODEL_FILES
from refine_perception.training.street_task import MODEL_FILES as STREET_FILES

# instance and street model files by format tag; anything else is a lane model
SEGMENTATION_FILES = {files.file_format: files for files in (*MODEL_FILES.values(), STREET_FILES, BPR_FILES)}
_DERIVED = ("format", "dtype", "file", "sha256", "bytes", "input_height", "input_width", "num_seg_classes",
            "num_priors", "sample_points", "pooling",
            *(key for files in SEGMENTATION_FILES.values() for key in files.architecture_keys))  # rewritten


def export_default(weights: str | Path, out: str | Path, describe: str | Path | None = None) -> dict[str, Any]:
    try:
        file_format = json.loads(metadata_path(weights).read_text()).get("format")
    except (OSError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{weights}: cannot read its metadata json: {err}") from err
    files = SEGMENTATION_FILES.get(file_format)
    model, metadata = files.load(weights) if files else load_lane_model(weights)
    info = {key: value for key, value in metadata.items() if key not in _DERIVED}
    if describe is not None:
        try:
            extra = json.loads(Path(describe).read_text())
        except (OSError, ValueError) as err:
            raise ModelFileError(f"{describe}: cannot read the metadata to add: {err}") from err
        if not isinstance(extra, dict):
            raise ModelFileError(f"{describe}: expected a json object")
        info |= extra
    if files:
        return files.save(out, model, info, torch.float16)
    return save_lane_model(out, model, str(info.pop("backbone")), info, dtype=torch.float16)
