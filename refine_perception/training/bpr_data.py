"""Boundary refinement training data: scenes (sticks or street) whose objects a trained segmenter segments;
each scene gives the patches along its predicted masks with targets from the best-matching ground-truth
object (models/bpr/refine.py: training_patches), a fixed number drawn per scene and epoch.

The segmenter runs inside the data-loading process on the scene as the node would see it, so the patches
show the segmenter's real mistakes. It is opened once per process, on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from refine_perception.data.formats.cityscapes import instances_of
from refine_perception.models.bpr.refine import PatchSettings, training_patches
from refine_perception.runtime.kinds import file_format
from refine_perception.segmentation.classes import STREET_INSTANCE_CLASSES, label_ids_of
from refine_perception.training.config import BPRDataConfig
from refine_perception.training.instance_data import SticksSource
from refine_perception.training.sources import ConcatenatedSources
from refine_perception.training.street_data import StreetSource

Objects = list[tuple[int, np.ndarray]]  # (class, bool mask at the image's size)
Segmenter = Callable[[np.ndarray], Objects]


def open_segmenter(path: str | Path) -> Segmenter:
    """The objects a trained instance or street model finds in a BGR image (classes: the instance model's
    class indices, or Cityscapes label ids for a street model)."""
    from refine_perception.models.lrn.weights import FORMAT as STREET_FORMAT

    if file_format(Path(path)) == STREET_FORMAT:
        from refine_perception.segmentation.predict import StreetPredictor

        street, _ = StreetPredictor.from_file(path)
        return lambda image: [(p.class_id, p.mask) for p in street([image], stages=[4])[0].instances]
    from refine_perception.instances.predict import InstancePredictor

    sticks, _ = InstancePredictor.from_file(path)
    return lambda image: [(r.class_id, r.mask) for r in sticks([image])[0]]


def sticks_truth(ids: np.ndarray) -> Objects:
    """A sticks scene's objects (class 0, the instance model's stick) from its id map (0: table)."""
    return [(0, ids == value) for value in np.unique(ids) if value != 0]


def street_truth(ids: np.ndarray, classes: Sequence[int]) -> Objects:
    """A street scene's objects of the given Cityscapes classes from its instanceIds map."""
    return [(instance.class_id, instance.mask) for instance in instances_of(ids, classes)]


class BPRPatchSet(ConcatenatedSources):
    """The scenes of one data config as (patches (P, 4, S, S), targets (P, S, S), valid (P,) bool) with P =
    patches_per_scene: drawn without replacement (repeated when a scene has fewer; `valid` marks repeats
    and the padding of a scene without any), flipped left-right as `flip` says, all from (seed, epoch, index)."""

    def __init__(self, data: BPRDataConfig, settings: PatchSettings, flip: float = 0.0, seed: int = 0,
                 segmenter: Segmenter | None = None) -> None:
        sources = [*(SticksSource(c) for c in data.sticks), *(StreetSource(c) for c in data.street)]
        super().__init__(sources, seed)
        self.data = data
        self.settings = settings
        self.flip = flip
        self._segmenter = segmenter  # None: `data.segmenter`'s model, opened on first use
        self._street_classes = label_ids_of(STREET_INSTANCE_CLASSES)

    def truth(self, index: int) -> tuple[np.ndarray, Objects, Objects]:
        """Scene `index`: its image, the segmenter's objects and the ground-truth objects."""
        if self._segmenter is None:
            self._segmenter = open_segmenter(self.data.segmenter)
        source, local = self.locate(index)
        image, ids = source[local]
        truth = sticks_truth(ids) if isinstance(source, SticksSource) else street_truth(ids, self._street_classes)
        return image, self._segmenter(image), truth

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, predicted, truth = self.truth(index)
        inputs, targets = training_patches(image, predicted, truth, self.settings)
        count, size = self.data.patches_per_scene, self.settings.input_size
        rng = self.rng(index)
        if len(inputs) == 0:
            return torch.zeros(count, 4, size, size), torch.zeros(count, size, size), torch.zeros(count, dtype=torch.bool)
        order = rng.permutation(len(inputs))
        picks = np.resize(order, count)  # repeats the permutation when the scene has fewer patches
        valid = torch.from_numpy(np.arange(count) < len(inputs))
        inputs, targets = inputs[picks], targets[picks]
        flipped = torch.from_numpy(rng.random(count) < self.flip)
        inputs[flipped] = inputs[flipped].flip(-1)
        targets[flipped] = targets[flipped].flip(-1)
        return inputs, targets, valid


Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def collate(batch: Sequence[Sample]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    inputs = torch.cat([item[0] for item in batch])
    return inputs, (torch.cat([item[1] for item in batch]), torch.cat([item[2] for item in batch]))
