"""Instance training data: stick scenes (rendered on the fly or read from a generated split) as network
inputs and instance-id maps.

Scene i of a synthetic source is `render_sticks(SeedSequence([seed, i]))`, the same scene the dataset
writer saves as image i of that seed, so a run can switch between the two without changing what it sees.
Ids are the stacking order + 1 (0 = table), kept as uint16 so that OpenCV can warp them (nearest).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from refine_perception.data.synthetic.sticks import render_sticks
from refine_perception.instances.result import InstanceResult
from refine_perception.models.preprocess import crop_resize, to_network
from refine_perception.training.augment import augment_instances
from refine_perception.training.config import AugmentConfig, SticksDataConfig
from refine_perception.training.sources import ConcatenatedSources, SceneSource


class SticksSource(SceneSource):
    """Indexable (BGR image, uint16 instance ids) pairs of one configured dataset."""

    def __init__(self, config: SticksDataConfig) -> None:
        self.config = config
        self.entries: list[dict] = []
        if config.kind == "disk":
            path = Path(config.root) / "annotations.json"
            try:
                self.entries = json.loads(path.read_text())["images"]
            except (OSError, ValueError, KeyError) as error:
                raise FileNotFoundError(f"{path}: not a sticks split written by `refine-perception data generate "
                                        f"sticks` ({error})") from error
        super().__init__(len(self.entries) if config.kind == "disk" else None, config.size, config.limit)

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        if c.kind == "synthetic":
            scene = render_sticks(np.random.SeedSequence([c.seed, index]), c.image_width, c.image_height)
            return scene.image, (scene.instance_map + 1).astype(np.uint16)
        entry = self.entries[index]
        image = cv2.imread(str(Path(c.root) / entry["file_name"]), cv2.IMREAD_COLOR)
        ids = cv2.imread(str(Path(c.root) / entry["instance_file"]), cv2.IMREAD_UNCHANGED)
        if image is None or ids is None or ids.shape != image.shape[:2]:
            raise OSError(f"{c.root}: cannot read image {entry['file_name']} with instances {entry['instance_file']}")
        return image, ids.astype(np.uint16)


def truth_from_ids(ids: np.ndarray) -> list[InstanceResult]:
    """The masks of an id map as ground-truth instances (what mask AP needs)."""
    return [InstanceResult(ids == value, 1.0) for value in np.unique(ids) if value != 0]


def resize_ids(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an id map to (height, width): ids must not blend."""
    return cv2.resize(ids, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


class InstanceTrainingSet(ConcatenatedSources):
    """The configured sources, concatenated, as (image (3, H, W) float in [0, 1], ids (H, W) int64) pairs at
    the network's input size, prepared exactly as the predictor prepares camera images. With `augment`,
    sample i of epoch e is augmented from (seed, e, i) alone."""

    def __init__(self, datasets: Sequence[SticksDataConfig], input_size: tuple[int, int],
                 augment_config: AugmentConfig | None = None, seed: int = 0) -> None:
        super().__init__([SticksSource(config) for config in datasets], seed)
        self.input_size = input_size
        self.augment_config = augment_config

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, ids = network_pair(self, index, self.input_size, self.augment_config)
        return torch.from_numpy(to_network(image)[0]), torch.from_numpy(ids.astype(np.int64))


def network_pair(sources: ConcatenatedSources, index: int, input_size: tuple[int, int],
                 augment_config: AugmentConfig | None) -> tuple[np.ndarray, np.ndarray]:
    """Sample `index` of `sources` as a uint8 image and an id map at the network's input size, the image
    resized as the predictor resizes camera images and the ids nearest-neighbour, then augmented from
    (seed, epoch, index) when `augment_config` is given."""
    source, local = sources.locate(index)
    image, ids = source[local]
    image = crop_resize(image, 0, input_size)
    ids = resize_ids(ids, input_size)
    if augment_config is not None:
        image, ids = augment_instances(image, ids, augment_config, sources.rng(index))
    return image, ids


def collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([image for image, _ in batch]), torch.stack([ids for _, ids in batch])
