"""Street segmentation as a training task: the Label Refinement Network with its embedding branch, street
scenes with augmentation, validation by the mIoU of every stage at the scenes' full size (the finest
stage's picks the best weights), and the LRN model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from refine_perception.metrics.semantic import SemanticConfusion
from refine_perception.models.discriminative.loss import DiscriminativeSettings
from refine_perception.models.lrn import weights as lrn_weights
from refine_perception.models.lrn.loss import LabelRefinementLoss
from refine_perception.models.lrn.network import STAGE_STRIDES, LabelRefinementNet
from refine_perception.models.lrn.weights import architecture, load_lrn, save_lrn
from refine_perception.segmentation.classes import IGNORE_LABEL, label_ids_of
from refine_perception.segmentation.predict import StreetPredictor
from refine_perception.training.config import StreetTrainConfig
from refine_perception.training.instance_task import ModelFiles
from refine_perception.training.street_data import StreetSource, StreetTargets, StreetTrainingSet, collate
from refine_perception.training.trainer import Trainer

VALIDATION_BATCH = 4
MODEL_FILES = ModelFiles(lrn_weights.FORMAT, lrn_weights.ARCHITECTURE_KEYS, architecture, save_lrn, load_lrn)


def build_network(config: StreetTrainConfig) -> LabelRefinementNet:
    m = config.model
    return LabelRefinementNet(m.classes, label_ids_of(m.classes), m.instance_classes, width=m.width,
                              decoder_channels=m.decoder_channels, embedding_dim=m.embedding_dim,
                              embedding_channels=m.embedding_channels, input_size=(m.input_height, m.input_width),
                              delta_var=config.loss.delta_v, delta_dist=config.loss.delta_d)


class StreetTask:
    name = "street"
    selection_metric = "mIoU"

    def __init__(self, config: StreetTrainConfig) -> None:
        self.config = config
        loss = config.loss
        settings = DiscriminativeSettings(loss.delta_v, loss.delta_d, loss.alpha, loss.beta, loss.gamma)
        self.criterion = LabelRefinementLoss(loss.stage_weights, STAGE_STRIDES, settings, loss.embedding_weight)
        self.targets = StreetTargets(config.model.classes, config.model.instance_classes)
        self.collate = collate

    def build_model(self) -> nn.Module:
        return MODEL_FILES.initialised(build_network(self.config), self.config.model.init)

    def training_set(self) -> StreetTrainingSet:
        c = self.config
        return StreetTrainingSet(c.train, (c.model.input_height, c.model.input_width), self.targets, c.augment,
                                 c.run.seed)

    def loss(self, output: tuple[torch.Tensor, ...],
             targets: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels, instances = (t.to(output[0].device) for t in targets)
        return self.criterion(output, labels, instances)

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float] | None:
        if not self.config.val.datasets:
            return None
        assert isinstance(model, LabelRefinementNet)
        predictor = StreetPredictor.from_model(model, device)
        confusions = [SemanticConfusion(model.num_classes, IGNORE_LABEL, model.class_names) for _ in STAGE_STRIDES]
        for dataset in self.config.val.datasets:
            source = StreetSource(dataset)
            for start in range(0, len(source), VALIDATION_BATCH):
                scenes = [source[i] for i in range(start, min(start + VALIDATION_BATCH, len(source)))]
                for (_, ids), result in zip(scenes, predictor([image for image, _ in scenes], instances=False)):
                    truth, _ = self.targets(ids)
                    for confusion, labels in zip(confusions, result.stage_labels):
                        confusion.update(labels, truth)
        figures = {f"mIoU_s{stride}": float(np.nan_to_num(c.miou())) for stride, c in zip(STAGE_STRIDES, confusions)}
        return {"mIoU": figures[f"mIoU_s{STAGE_STRIDES[-1]}"], **figures}

    def export(self, path: Path, model: nn.Module, info: dict[str, Any]) -> None:
        assert isinstance(model, LabelRefinementNet)
        save_lrn(path, model, info)


class StreetTrainer(Trainer):
    """The loop on a street config: what `refine-train street` runs."""

    def __init__(self, config: StreetTrainConfig, progress: bool = True) -> None:
        super().__init__(config, StreetTask(config), progress)
