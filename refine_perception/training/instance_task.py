"""Instance segmentation as a training task: the network and loss of the config's formulation (SpatialEmbeddings
or the discriminative loss with a semantic head), stick scenes with augmentation, validation by mask AP
through the same predictor the node runs (AP picks the best weights) and the formulation's model file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refine_perception.evaluation.instances import score_instance_frames
from refine_perception.instances.predict import InstancePredictor
from refine_perception.models.discriminative import weights as discriminative_weights
from refine_perception.models.discriminative.loss import DiscriminativeNetLoss, DiscriminativeSettings
from refine_perception.models.discriminative.network import DiscriminativeNet
from refine_perception.models.model_file import ModelFileError
from refine_perception.models.spatial_embeddings import weights as spatial_weights
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.spatial_embeddings.loss import SpatialEmbeddingLoss
from refine_perception.training.config import InstancesTrainConfig
from refine_perception.training.instance_data import InstanceTrainingSet, SticksSource, collate, truth_from_ids
from refine_perception.training.trainer import Trainer

VALIDATION_BATCH = 8


@dataclass(frozen=True)
class ModelFiles:
    """How one formulation's networks are described, saved (with `info`, in a dtype) and loaded."""

    file_format: str
    architecture_keys: tuple[str, ...]
    architecture: Callable[[Any], dict[str, Any]]
    save: Callable[..., dict[str, Any]]
    load: Callable[[str | Path], tuple[nn.Module, dict[str, Any]]]

    def initialised(self, model: nn.Module, init: str) -> nn.Module:
        """`model` with the weights of file `init` (a config's `model.init`; "": left as it is), which must
        hold the same architecture."""
        if init:
            start, _ = self.load(init)
            if self.architecture(start) != self.architecture(model):
                raise ModelFileError(f"{init}: architecture {self.architecture(start)} differs from the "
                                     f"config's {self.architecture(model)}")
            model.load_state_dict(start.state_dict())
        return model


MODEL_FILES = {
    "spatial_embeddings": ModelFiles(spatial_weights.FORMAT, spatial_weights.ARCHITECTURE_KEYS,
                                     spatial_weights.architecture, spatial_weights.save_spatial_embeddings,
                                     spatial_weights.load_spatial_embeddings),
    "discriminative": ModelFiles(discriminative_weights.FORMAT, discriminative_weights.ARCHITECTURE_KEYS,
                                 discriminative_weights.architecture, discriminative_weights.save_discriminative,
                                 discriminative_weights.load_discriminative),
}


def build_network(config: InstancesTrainConfig) -> SpatialEmbeddingNet | DiscriminativeNet:
    """The untrained network of the config's formulation, for one class (sticks)."""
    m, size = config.model, (config.model.input_height, config.model.input_width)
    if m.formulation == "discriminative":
        return DiscriminativeNet(1, m.embedding_dim, m.width, coordinates=m.coordinates, line_channels=m.line_channels,
                                 line_unit_px=m.line_unit_px, input_size=size,
                                 class_names=("stick",), delta_var=config.loss.delta_v, delta_dist=config.loss.delta_d)
    return SpatialEmbeddingNet(1, m.n_sigma, m.width, input_size=size, pixels_per_unit=m.pixels_per_unit,
                               class_names=("stick",))


def build_loss(config: InstancesTrainConfig) -> nn.Module:
    loss = config.loss
    if config.model.formulation == "discriminative":
        settings = DiscriminativeSettings(loss.delta_v, loss.delta_d, loss.alpha, loss.beta, loss.gamma)
        return DiscriminativeNetLoss(config.model.embedding_dim, settings, loss.semantic_weight)
    return SpatialEmbeddingLoss(config.model.n_sigma, config.model.pixels_per_unit, w_inst=loss.instance_weight,
                                w_var=loss.variance_weight, w_seed=loss.seed_weight,
                                foreground_weight=loss.foreground_weight, w_offset=loss.offset_weight)


class InstanceTask:
    name = "instances"
    selection_metric = "AP"

    def __init__(self, config: InstancesTrainConfig) -> None:
        self.config = config
        self.criterion = build_loss(config)
        self.files = MODEL_FILES[config.model.formulation]
        self.collate = collate

    def build_model(self) -> nn.Module:
        return self.files.initialised(build_network(self.config), self.config.model.init)

    def training_set(self) -> InstanceTrainingSet:
        c = self.config
        return InstanceTrainingSet(c.train, (c.model.input_height, c.model.input_width), c.augment, c.run.seed)

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.criterion(output, targets.to(output.device))

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float] | None:
        if not self.config.val.datasets:
            return None
        assert isinstance(model, SpatialEmbeddingNet | DiscriminativeNet)
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
        self.files.save(path, model, info)


class InstanceTrainer(Trainer):
    """The loop on an instances config: what `refine-train instances` runs."""

    def __init__(self, config: InstancesTrainConfig, progress: bool = True) -> None:
        super().__init__(config, InstanceTask(config), progress)
