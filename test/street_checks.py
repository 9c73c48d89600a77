"""Shared by the street tests: an untrained label refinement file whose output still has instances to
publish (the finest stage calls every pixel a car, so the clustering splits the image into car instances
by its random embeddings)."""

from __future__ import annotations

from pathlib import Path

import torch

from refine_perception.models.lrn.network import LabelRefinementNet
from refine_perception.models.lrn.weights import save_lrn
from refine_perception.segmentation.classes import STREET_CLASSES, STREET_INSTANCE_CLASSES, label_ids_of


def write_car_model(path: Path, input_size: tuple[int, int] = (64, 128)) -> Path:
    torch.manual_seed(0)
    net = LabelRefinementNet(STREET_CLASSES, label_ids_of(STREET_CLASSES), STREET_INSTANCE_CLASSES, width=0.125,
                             decoder_channels=8, embedding_channels=8, embedding_dim=4, input_size=input_size)
    with torch.no_grad():
        net.stages[-1].refine[-1].bias[STREET_CLASSES.index("car")] += 20.0
        net.embedding.head[-1].weight.mul_(20.0)  # spread the embedding beyond one bandwidth: several cars
    save_lrn(path, net.eval(), {"note": "untrained test model"})
    return path
