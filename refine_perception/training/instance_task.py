"""SpatialEmbeddings as a training task: the network of the config, stick scenes with augmentation, the
SpatialEmbeddings loss, validation by mask AP through the same predictor the node runs (AP picks the
best weights) and the instance model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refine_perception.evaluation.instances import score_instance_frames
from refine_perception.instances.predict import InstancePredictor
from refine_perception.models.model_file import ModelFileError
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.loss import SpatialEmbeddingLoss
from refine_perception.models.spatial_embeddings.weights import (
    architecture,
    load_spatial_embeddings,
    save_spatial_embeddings,
)
from refine_perception.training.config import InstancesTrainConfig
from refine_perception.training.instance_data import InstanceTrainingSet, SticksSource, collate, truth_from_ids
from refine_perception.training.trainer import Trainer

VALIDATION_BATCH = 8


class InstanceTask:
    name = "instances"
    selection_metric = "AP"

    def __init__(self, config: InstancesTrainConfig) -> None:
        self.config = config
        loss = config.loss
        self.criterion = SpatialEmbeddingLoss(config.model.n_sigma, config.model.pixels_per_unit,
                                              w_inst=loss.instance_weight, w_var=loss.variance_weight,
                                              w_seed=loss.seed_weight, foreground_weight=loss.foreground_weight,
                                              w_offset=loss.offset_weight)
        self.collate = collate

    def build_model(self) -> SpatialEmbeddingNet:
        m = self.config.model
        model = SpatialEmbeddingNet(1, m.n_sigma, m.width, input_size=(m.input_height, m.input_width),
                                    pixels_per_unit=m.pixels_per_unit, class_names=("stick",))
        if m.init:
            start, _ = load_spatial_embeddings(m.init)
            if architecture(start) != architecture(model):
                raise ModelFileError(f"{m.init}: architecture {architecture(start)} differs from the config's "
                                     f"{architecture(model)}")
            model.load_state_dict(start.state_dict())
        return model

    def training_set(self) -> InstanceTrainingSet:
        c = self.config
        return InstanceTrainingSet(c.train, (c.model.input_height, c.model.input_width), c.augment, c.run.seed)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.criterion(output, targets.to(output.device))

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float] | None:
        if not self.config.val.datasets:
            return None
        assert isinstance(model, SpatialEmbeddingNet)
        predictor = InstancePredictor.from_model(model, device=device)
        truth: list[list[Any]] = []
        predictions: list[list[Any] | None] = []
        for dataset in self.config.val.datasets:
            source = SticksSource(dataset)
            for start in range(0, len(source), VALIDATION_BATCH):
                scenes = [source[i] for i in range(start, min(start + VALIDATION_BATCH, len(source)))]
                truth += [truth_from_ids(ids) for _, ids in scenes]
                predictions += predictor([image for image, _ in scenes])
        scores = score_instance_frames(truth, predictions)
        summary = scores.mask_ap.summary
        return {"AP": float(np.nan_to_num(summary["AP"])), "AP50": float(np.nan_to_num(summary["AP50"])),
                "boundary_F": float(scores.boundary_f), "mIoU": float(scores.semantic.miou())}

    def export(self, path: Path, model: nn.Module, info: dict[str, Any]) -> None:
        assert isinstance(model, SpatialEmbeddingNet)
        save_spatial_embeddings(path, model, info)


class InstanceTrainer(Trainer):
    """The loop on a SpatialEmbeddings config: what `refine-train instances` runs."""

    def __init__(self, config: InstancesTrainConfig, progress: bool = True) -> None:
        super().__init__(config, InstanceTask(config), progress)
