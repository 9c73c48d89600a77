"""Street training data: scenes rendered on the fly or read from a Cityscapes-layout folder, as network
inputs with class-index and instance-id targets.

One uint16 map carries both targets through augmentation: the Cityscapes instanceIds, which hold the
label id for stuff and class * 1000 + k for an instance. It is warped with nearest sampling (ids never
blend) and only split afterwards, so labels and instances cannot disagree. Pixels the warp brings in from
outside the image get id 0 (unlabelled), which is void.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from refine_perception.data.formats import cityscapes
from refine_perception.data.synthetic.street import render_street
from refine_perception.models.preprocess import to_network
from refine_perception.segmentation.classes import class_lookup, label_ids_of
from refine_perception.training.config import AugmentConfig, StreetDataConfig
from refine_perception.training.instance_data import network_pair
from refine_perception.training.sources import ConcatenatedSources, SceneSource


class StreetSource(SceneSource):
    """Indexable (BGR image, instanceIds (H, W) uint16) pairs of one configured dataset."""

    def __init__(self, config: StreetDataConfig) -> None:
        self.config = config
        self.samples: list[cityscapes.CityscapesPaths] = []
        if config.kind == "cityscapes":
            self.samples = cityscapes.find_samples(config.root, config.split)
            if not self.samples:
                raise FileNotFoundError(f"{config.root}: no gtFine/{config.split}/*/*_gtFine_labelIds.png (a "
                                        "Cityscapes layout, as `refine-perception data generate street` writes)")
        super().__init__(len(self.samples) if config.kind == "cityscapes" else None, config.size, config.limit)

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        if c.kind == "synthetic":
            scene = render_street(np.random.SeedSequence([c.seed, index]), c.image_width, c.image_height)
            return scene.image, scene.instance_ids.astype(np.uint16)
        paths = self.samples[index]
        image = read_color(paths.image)
        annotation = cityscapes.read_annotation(paths.label_ids, paths.instance_ids)
        if annotation.instance_ids.shape != image.shape[:2]:
            raise OSError(f"{paths.image}: size {image.shape[:2]} differs from its labels' {annotation.instance_ids.shape}")
        return image, annotation.instance_ids.astype(np.uint16)


def read_color(path: object) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return image


class StreetTargets:
    """Splits an instanceIds map into the network's targets for a fixed class list."""

    def __init__(self, classes: Sequence[str], instance_classes: Sequence[str]) -> None:
        self.lookup = class_lookup(label_ids_of(classes))
        self.instance_ids = np.asarray(label_ids_of(instance_classes), np.int64)

    def __call__(self, instance_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class indices (H, W) uint8 with IGNORE_LABEL for void, instance ids (H, W) int64, 0 for none)."""
        label_ids = cityscapes.class_of(instance_ids.astype(np.int64))
        things = (instance_ids >= cityscapes.INSTANCE_OFFSET) & np.isin(label_ids, self.instance_ids)
        return self.lookup[label_ids], np.where(things, instance_ids, 0).astype(np.int64)


class StreetTrainingSet(ConcatenatedSources):
    """The configured sources, concatenated, as (image (3, H, W) float in [0, 1], class indices (H, W)
    int64, instance ids (H, W) int64) at the network's input size, the image prepared as the node prepares
    camera images. With `augment`, sample i of epoch e is augmented from (seed, e, i) alone."""

    def __init__(self, datasets: Sequence[StreetDataConfig], input_size: tuple[int, int], targets: StreetTargets,
                 augment_config: AugmentConfig | None = None, seed: int = 0) -> None:
        super().__init__([StreetSource(config) for config in datasets], seed)
        self.input_size = input_size
        self.targets = targets
        self.augment_config = augment_config

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, ids = network_pair(self, index, self.input_size, self.augment_config)
        labels, instances = self.targets(ids)
        return (torch.from_numpy(to_network(image)[0]), torch.from_numpy(labels.astype(np.int64)),
                torch.from_numpy(instances))


Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def collate(batch: Sequence[Sample]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    return (torch.stack([item[0] for item in batch]),
            (torch.stack([item[1] for item in batch]), torch.stack([item[2] for item in batch])))
