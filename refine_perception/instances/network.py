"""The instance networks (SpatialEmbeddings, discriminative loss) as the runtime sees them: file format, graph
output and int8 calibration (32 sticks scenes of a seed no training or test split uses, at the camera default
640x480, resized as the node does), shared by both kinds.

Precision `auto` keeps fp32 on the CPU until held-out figures of a trained model show int8 within a point of
fp32 mask AP; int8 can be asked for explicitly meanwhile."""

from __future__ import annotations

from refine_perception.data.synthetic.sticks import render_sticks
from refine_perception.models.discriminative import weights as discriminative_weights
from refine_perception.models.spatial_embeddings.weights import FORMAT, load_spatial_embeddings
from refine_perception.runtime.kinds import NetworkKind, rendered_calibration

CALIBRATION_SEED = 97
CALIBRATION_IMAGES = 32
CALIBRATION_TAG = f"cal{CALIBRATION_IMAGES}s{CALIBRATION_SEED}"
calibration_images = rendered_calibration(lambda seed: render_sticks(seed).image, CALIBRATION_SEED, CALIBRATION_IMAGES)


SPATIAL_EMBEDDINGS = NetworkKind(
    name="spatial-embeddings",
    file_format=FORMAT,
    load=load_spatial_embeddings,
    output_names=("output",),
    calibration=calibration_images,
    calibration_tag=CALIBRATION_TAG,
)

DISCRIMINATIVE = NetworkKind(
    name="discriminative",
    file_format=discriminative_weights.FORMAT,
    load=discriminative_weights.load_discriminative,
    output_names=("output",),
    calibration=calibration_images,
    calibration_tag=CALIBRATION_TAG,
)
