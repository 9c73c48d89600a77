"""Lane training data: records from disk or from the synthetic generator, turned into network inputs
and `LaneTargets`.

Coordinates travel through three frames: the original image (what the annotation gives), the network
input (after cropping `cut_height` rows and resizing, where augmentation happens) and the 800x320 label
space the targets are encoded in. Type and colour labels come from the generator, or from the json
sidecar our generator writes next to each image; other datasets leave them unlabelled (-1).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from refine_perception.data.formats.culane import CULaneDataset
from refine_perception.data.formats.curvelanes import CurveLanesDataset
from refine_perception.data.formats.lanes import LaneDataset
from refine_perception.data.formats.tusimple import TuSimpleDataset
from refine_perception.data.synthetic.road import CULANE_HORIZON, TUSIMPLE_HORIZON, road_sample
from refine_perception.models.clrnet.head import LANE_COLORS, LANE_TYPES
from refine_perception.models.clrnet.loss import UNLABELLED, LaneTargets
from refine_perception.models.clrnet.priors import IMG_H, IMG_W
from refine_perception.models.clrnet.targets import encode_lanes
from refine_perception.models.preprocess import crop_resize, to_network
from refine_perception.training.augment import augment
from refine_perception.training.config import AugmentConfig, DatasetConfig
from refine_perception.training.sources import ConcatenatedSources

SEG_WIDTH_AT_1640 = 16  # CULane's laneseg_label_w16 line width, scaled to the input width
FRAMINGS = {"culane": ((1640, 590), CULANE_HORIZON), "tusimple": ((1280, 720), TUSIMPLE_HORIZON)}


@dataclass(frozen=True)
class LaneRecord:
    """One annotated image: BGR uint8, lanes (N, 2) in its pixels bottom to top and left to right,
    per-lane type and colour indices into LANE_TYPES / LANE_COLORS (-1 unlabelled)."""

    image: np.ndarray
    lanes: tuple[np.ndarray, ...]
    types: tuple[int, ...]
    colors: tuple[int, ...]
    category: str | None
    name: str


def type_label(kind: str) -> int:
    return LANE_TYPES.index(kind) if kind in LANE_TYPES else UNLABELLED


def color_label(colour: str) -> int:
    # a road edge has no paint ("none"): leave it out of the colour loss rather than teach "unknown"
    return LANE_COLORS.index(colour) if colour in LANE_COLORS and colour != "unknown" else UNLABELLED


class LaneSource:
    """Indexable LaneRecords of one configured dataset."""

    def __init__(self, config: DatasetConfig) -> None:
        self.config = config
        self.disk: LaneDataset | None = None
        if config.kind == "culane":
            self.disk = CULaneDataset(config.root, config.list_file)
        elif config.kind == "tusimple":
            self.disk = TuSimpleDataset(config.root, config.label_files)
        elif config.kind == "curvelanes":
            self.disk = CurveLanesDataset(config.root, config.split)
        available = len(self.disk) if self.disk is not None else config.size
        self.length = min(available, config.limit) if config.limit > 0 else available

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> LaneRecord:
        if not 0 <= index < self.length:
            raise IndexError(f"record {index} of a source with {self.length}")
        if self.disk is None:
            (width, height), horizon = FRAMINGS[self.config.framing]
            sample = road_sample(self.config.seed, index, width, height, self.config.category or None, horizon)
            return LaneRecord(
                sample.image,
                tuple(lane.image_points for lane in sample.lanes),
                tuple(type_label(lane.kind) for lane in sample.lanes),
                tuple(color_label(lane.colour) for lane in sample.lanes),
                sample.category,
                f"synthetic:{self.config.seed}:{index}",
            )
        entry = self.disk.load(index)
        image = cv2.imread(str(entry.image), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"cannot read image {entry.image}")
        types, colors = _sidecar_labels(entry.image, len(entry.lanes))
        category = entry.category
        return LaneRecord(image, tuple(entry.lanes), types, colors, category, str(entry.image))


def _sidecar_labels(image: Path, count: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Type/colour labels from our generator's sidecar json, when it describes the same lanes."""
    path = image.with_suffix(".json")
    unlabelled = (UNLABELLED,) * count
    if not path.is_file():
        return unlabelled, unlabelled
    try:
        lanes = json.loads(path.read_text())["lanes"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OSError(f"unreadable lane sidecar {path}: {err}") from err
    if len(lanes) != count:
        return unlabelled, unlabelled
    return tuple(type_label(lane["kind"]) for lane in lanes), tuple(color_label(lane["colour"]) for lane in lanes)


def to_input_frame(lanes: Sequence[np.ndarray], original: tuple[int, int], cut_height: int,
                   input_size: tuple[int, int]) -> list[np.ndarray]:
    """Lanes from original-image pixels (original = (height, width)) to network-input pixels."""
    height, width = original
    sx = input_size[1] / width
    sy = input_size[0] / (height - cut_height)
    return [np.column_stack([lane[:, 0] * sx, (lane[:, 1] - cut_height) * sy]) for lane in lanes]


def lane_targets(lanes: Sequence[np.ndarray], types: Sequence[int], colors: Sequence[int],
                 input_size: tuple[int, int], num_seg_classes: int) -> LaneTargets:
    """Targets of lanes given in network-input pixels, left to right, with the segmentation labels drawn
    at the input size (lane k of the kept ones gets class k + 1, capped at the last class)."""
    height, width = input_size
    label_lanes = [np.column_stack([lane[:, 0] * IMG_W / width, lane[:, 1] * IMG_H / height]) for lane in lanes]
    encoded, kept = encode_lanes(label_lanes)
    seg = np.zeros(input_size, np.uint8)
    thickness = max(1, round(SEG_WIDTH_AT_1640 * width / 1640))
    for order, index in enumerate(kept):
        points = np.round(lanes[index] * 16).astype(np.int32)
        cls = min(order + 1, num_seg_classes - 1)
        cv2.polylines(seg, [points], False, cls, thickness, cv2.LINE_8, shift=4)
    return LaneTargets(
        torch.from_numpy(encoded),
        torch.tensor([types[i] for i in kept], dtype=torch.long),
        torch.tensor([colors[i] for i in kept], dtype=torch.long),
        torch.from_numpy(seg.astype(np.int64)),
    )


class LaneTrainingSet(ConcatenatedSources):
    """The configured datasets, concatenated, as (image (3, H, W) float, LaneTargets) pairs; with
    `augment` set, sample i of epoch e is augmented from (seed, e, i) alone."""

    def __init__(self, datasets: Sequence[DatasetConfig], input_size: tuple[int, int], num_seg_classes: int,
                 augment_config: AugmentConfig | None = None, seed: int = 0) -> None:
        super().__init__([LaneSource(config) for config in datasets], seed)
        self.input_size = input_size
        self.num_seg_classes = num_seg_classes
        self.augment_config = augment_config

    def record(self, index: int) -> tuple[LaneRecord, int]:
        """The record behind sample `index` and its dataset's cut height."""
        source, local = self.locate(index)
        return source[local], source.config.cut_height

    def __getitem__(self, index: int) -> tuple[torch.Tensor, LaneTargets]:
        record, cut_height = self.record(index)
        image = crop_resize(record.image, cut_height, self.input_size)
        lanes = to_input_frame(record.lanes, record.image.shape[:2], cut_height, self.input_size)
        if self.augment_config is not None:
            image, lanes = augment(image, lanes, self.augment_config, self.rng(index))
        targets = lane_targets(lanes, record.types, record.colors, self.input_size, self.num_seg_classes)
        return torch.from_numpy(to_network(image)[0]), targets


def collate(batch: Sequence[tuple[torch.Tensor, LaneTargets]]) -> tuple[torch.Tensor, list[LaneTargets]]:
    return torch.stack([image for image, _ in batch]), [targets for _, targets in batch]
