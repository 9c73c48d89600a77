"""CLRNet as a training task: the network of the config (from scratch, from ImageNet backbone weights or
from a lane model), the lane datasets and augmentation, the CLRNet loss, CULane-metric validation (F1@50
picks the best weights) and the lane model file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from refine_perception.models.backbones.pretrained import load_imagenet_weights
from refine_perception.models.clrnet.loss import CLRNetLoss, LaneTargets
from refine_perception.models.clrnet.model import CLRNet
from refine_perception.models.clrnet.weights import (
    TENSOR_KEYS,
    ModelFileError,
    architecture,
    load_lane_model,
    save_lane_model,
)
from refine_perception.training.config import LanesTrainConfig
from refine_perception.training.lane_data import LaneTrainingSet, collate
from refine_perception.training.lane_eval import evaluate_culane
from refine_perception.training.trainer import Trainer

log = logging.getLogger("refine_train")


class LaneTask:
    name = "lanes"
    selection_metric = "F1@50"

    def __init__(self, config: LanesTrainConfig) -> None:
        self.config = config
        self.criterion = CLRNetLoss.from_preset(config.loss.preset, config.loss.type_weight, config.loss.color_weight,
                                                config.loss.iou)
        self.collate = collate

    def build_model(self) -> CLRNet:
        m = self.config.model
        model = CLRNet(m.backbone, m.num_seg_classes, (m.input_height, m.input_width), m.num_priors, m.sample_points,
                       m.pooling)
        if m.init:
            start, metadata = load_lane_model(m.init)
            # only what shapes the tensors must agree: a run may change the pooling or the input size
            ours = {k: v for k, v in architecture(model, m.backbone).items() if k in TENSOR_KEYS}
            theirs = {key: metadata.get(key) for key in ours}
            if theirs != ours:
                raise ModelFileError(f"{m.init}: architecture {theirs} differs from the config's {ours}")
            model.load_state_dict(start.state_dict())
        elif m.backbone_weights:
            report = load_imagenet_weights(model.backbone, m.backbone_weights)
            log.info("backbone: %d tensors from %s (%d unused entries left out)", report.loaded,
                     m.backbone_weights, len(report.ignored))
        return model

    def training_set(self) -> LaneTrainingSet:
        c = self.config
        return LaneTrainingSet(c.train, (c.model.input_height, c.model.input_width), c.model.num_seg_classes,
                               c.augment, c.run.seed)

    def loss(self, output: Any, targets: list[LaneTargets]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.criterion(output, targets)

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float] | None:
        if not self.config.val.datasets:
            return None
        result = evaluate_culane(model, self.config.val, device)
        return {"F1@50": result.f1(0.5), "F1@75": result.f1(0.75), "mF1": result.mf1()}

    def export(self, path: Path, model: nn.Module, info: dict[str, Any]) -> None:
        save_lane_model(path, model, self.config.model.backbone, {"cut_height": self.config.train[0].cut_height, **info})


class LaneTrainer(Trainer):
    """The loop on a CLRNet config: what `refine-train lanes` runs."""

    def __init__(self, config: LanesTrainConfig, progress: bool = True) -> None:
        super().__init__(config, LaneTask(config), progress)
