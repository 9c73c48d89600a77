"""Boundary patch refinement as a training task: the patch network on patches along a trained segmenter's
masks (training/bpr_data.py), a binary cross-entropy per pixel (the paper's two-class softmax is the same),
validation by the boundary F (3 px) of the refined masks against their best-matching objects, next to that
of the unrefined masks (the refined one picks the best weights), and the BPR model file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from refine_perception.metrics.boundary import boundary_f_score
from refine_perception.metrics.instances import mask_iou
from refine_perception.models.bpr import weights as bpr_weights
from refine_perception.models.bpr.network import BoundaryRefiner
from refine_perception.models.bpr.refine import MATCH_IOU, PatchSettings, refine_masks
from refine_perception.training.bpr_data import BPRPatchSet, collate
from refine_perception.training.config import BPRTrainConfig
from refine_perception.training.instance_task import ModelFiles
from refine_perception.training.trainer import Trainer

MODEL_FILES = ModelFiles(bpr_weights.FORMAT, bpr_weights.ARCHITECTURE_KEYS, bpr_weights.architecture,
                         bpr_weights.save_bpr, bpr_weights.load_bpr)
BOUNDARY_TOLERANCE_PX = 3


class BPRTask:
    name = "bpr"
    selection_metric = "boundary_F"

    def __init__(self, config: BPRTrainConfig) -> None:
        self.config = config
        m = config.model
        self.patches = PatchSettings(m.patch_size, m.input_size)
        self.collate = collate

    def build_model(self) -> nn.Module:
        m = self.config.model
        return MODEL_FILES.initialised(BoundaryRefiner(m.channels, m.patch_size, m.input_size), m.init)

    def training_set(self) -> BPRPatchSet:
        c = self.config
        settings = PatchSettings(c.model.patch_size, c.model.input_size, nms_threshold=0.25)
        return BPRPatchSet(c.train, settings, c.augment.flip, c.run.seed)

    def loss(self, output: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        truth, valid = (t.to(output.device) for t in targets)
        per_patch = F.binary_cross_entropy_with_logits(output[:, 0], truth, reduction="none").mean(dim=(1, 2))
        loss = (per_patch * valid).sum() / valid.sum().clamp(min=1)
        return loss, {"patches": valid.sum().float().detach()}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float] | None:
        data = self.config.val.data
        if not (data.sticks or data.street):
            return None
        scenes = BPRPatchSet(data, self.patches)

        @torch.inference_mode()
        def run(batch: torch.Tensor) -> torch.Tensor:
            return model(batch.to(device)).float().cpu()

        coarse_f, refined_f, patches = [], [], 0
        for index in range(len(scenes)):
            image, predicted, truth = scenes.truth(index)
            refined, count = refine_masks(image, [mask for _, mask in predicted], run, self.patches)
            patches += count
            for (class_id, mask), better in zip(predicted, refined):
                matches = [(mask_iou(mask, gt), gt) for c, gt in truth if c == class_id]
                best_iou, best = max(matches, key=lambda pair: pair[0], default=(0.0, None))
                if best is None or best_iou <= MATCH_IOU:
                    continue
                coarse_f.append(boundary_f_score(mask, best, BOUNDARY_TOLERANCE_PX).f)
                refined_f.append(boundary_f_score(better, best, BOUNDARY_TOLERANCE_PX).f)
        coarse, refined = (float(np.mean(values)) if values else 0.0 for values in (coarse_f, refined_f))
        return {"boundary_F": refined, "boundary_F_unrefined": coarse, "gain": refined - coarse,
                "objects": float(len(coarse_f)), "patches_per_scene": patches / max(len(scenes), 1)}

    def export(self, path: Path, model: nn.Module, info: dict[str, Any]) -> None:
        assert isinstance(model, BoundaryRefiner)
        MODEL_FILES.save(path, model, info)


class BPRTrainer(Trainer):
    """The loop on a bpr config: what `refine-train bpr` runs."""

    def __init__(self, config: BPRTrainConfig, progress: bool = True) -> None:
        super().__init__(config, BPRTask(config), progress)
