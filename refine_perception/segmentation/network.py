"""The Label Refinement Network as the runtime sees it: file format, graph outputs (every stage's label
logits, coarse to fine, then the embedding) and int8 calibration (16 street scenes of a seed no training or
test split uses, at the generator's 1024x512, resized as the node does). Precision `auto` stays fp32 on the
CPU until held-out figures show int8 keeps the accuracy."""

from __future__ import annotations

from dataclasses import replace

from refine_perception.data.synthetic.street import render_street
from refine_perception.models.lrn.network import STAGE_STRIDES
from refine_perception.models.lrn.weights import FORMAT, load_lrn
from refine_perception.runtime.kinds import NetworkKind, rendered_calibration
from refine_perception.runtime.model import LoadedModel

CALIBRATION_SEED = 97
CALIBRATION_IMAGES = 16
OUTPUT_NAMES = (*(f"labels_s{stride}" for stride in STAGE_STRIDES), "embedding")
calibration_images = rendered_calibration(lambda seed: render_street(seed).image, CALIBRATION_SEED, CALIBRATION_IMAGES)


LABEL_REFINEMENT = NetworkKind(
    name="lrn",
    file_format=FORMAT,
    load=load_lrn,
    output_names=OUTPUT_NAMES,
    calibration=calibration_images,
    calibration_tag=f"cal{CALIBRATION_IMAGES}s{CALIBRATION_SEED}",
)


def truncated_model(model: LoadedModel, stages: int, embedding: bool) -> LoadedModel:
    """The loaded model as a graph of its first `stages` label maps (and the embedding only with
    `embedding`): its own kind name, so its exports and engines are cached apart from the full graph's."""
    if (stages, embedding) == (len(STAGE_STRIDES), True):
        return model
    names = (*OUTPUT_NAMES[:stages], *(OUTPUT_NAMES[-1:] if embedding else ()))
    kind = replace(model.kind, name=f"{model.kind.name}-{stages}stages{'-embedding' if embedding else ''}",
                   output_names=names)
    return replace(model, kind=kind, module=model.module.truncated(stages, embedding))
