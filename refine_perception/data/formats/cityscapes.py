"""Cityscapes ground truth: `gtFine_labelIds` (8-bit class ids) and `gtFine_instanceIds` (16-bit; class id
for stuff and groups, class id * 1000 + k for the k-th instance of a class) next to `leftImg8bit` images,
in the folder layout `<kind>/<split>/<city>/<city>_<seq>_<frame>_<suffix>.png`.

Label ids are the official ones of cityscapesscripts' labels table, plus one class Cityscapes lacks:
lane marking, id 34 (the first id after the official 0-33; Cityscapes paints markings as road). The
official evaluators look every id up in their own table and stop at 34, so `fold_lane_marking` maps it
back to road before ground truth goes to them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import Label, labels

from refine_perception.data.formats.lanes import AnnotationError

ROAD_ID = 7
LANE_MARKING = Label(
    name="lane marking",
    id=34,
    trainId=19,  # after the 19 official training classes (0-18)
    category="flat",
    categoryId=1,
    hasInstances=False,
    ignoreInEval=False,
    color=(255, 255, 255),
)
LABELS: tuple[Label, ...] = (*(label for label in labels if label.id >= 0), LANE_MARKING)
ID_TO_LABEL: dict[int, Label] = {label.id: label for label in LABELS}
INSTANCE_OFFSET = 1000  # instance id = class id * 1000 + k

_SUFFIXES = {"image": "leftImg8bit", "label_ids": "gtFine_labelIds", "instance_ids": "gtFine_instanceIds"}
_FOLDERS = {"image": "leftImg8bit", "label_ids": "gtFine", "instance_ids": "gtFine"}


@dataclass(frozen=True)
class CityscapesPaths:
    """The three files of one sample."""

    image: Path
    label_ids: Path
    instance_ids: Path


@dataclass(frozen=True)
class Instance:
    instance_id: int
    class_id: int
    mask: np.ndarray  # bool (H, W)


def stem(city: str, sequence: int, frame: int) -> str:
    """`<city>_<seq>_<frame>` with six-digit numbers, the part every file name of a sample shares."""
    if "_" in city or not city:
        raise ValueError(f"city name {city!r} must be non-empty and free of '_' (it separates name fields)")
    return f"{city}_{sequence:06d}_{frame:06d}"


def sample_paths(root: str | Path, split: str, city: str, sequence: int, frame: int) -> CityscapesPaths:
    name = stem(city, sequence, frame)
    root = Path(root)
    return CityscapesPaths(
        **{key: root / _FOLDERS[key] / split / city / f"{name}_{_SUFFIXES[key]}.png" for key in _SUFFIXES}
    )


def find_samples(root: str | Path, split: str) -> list[CityscapesPaths]:
    """Every sample of a split that has a labelIds file, sorted by name; the partner files are derived
    from it (their existence is checked when they are read)."""
    label_files = sorted((Path(root) / "gtFine" / split).glob(f"*/*_{_SUFFIXES['label_ids']}.png"))
    out = []
    for path in label_files:
        parts = path.name[: -len(f"_{_SUFFIXES['label_ids']}.png")].split("_")
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            raise AnnotationError(path, None, "name is not <city>_<sequence>_<frame>_gtFine_labelIds.png")
        out.append(sample_paths(root, split, parts[0], int(parts[1]), int(parts[2])))
    return out


def fold_lane_marking(ids: np.ndarray) -> np.ndarray:
    """Label or instance ids with lane marking turned into road, the official table's view of it."""
    return np.where(ids == LANE_MARKING.id, ROAD_ID, ids).astype(ids.dtype)


def color_table() -> np.ndarray:
    """(256, 3) uint8 BGR colour per label id (black for ids without a class), for colourising maps."""
    table = np.zeros((256, 3), np.uint8)
    for label in LABELS:
        table[label.id] = label.color[::-1]
    return table


def class_of(instance_ids: np.ndarray) -> np.ndarray:
    """The class id of every value of an instanceIds map."""
    return np.where(instance_ids >= INSTANCE_OFFSET, instance_ids // INSTANCE_OFFSET, instance_ids)


def colorize(label_ids: np.ndarray) -> np.ndarray:
    return color_table()[label_ids]


def instance_ids_from_masks(
    label_ids: np.ndarray, masks: list[np.ndarray] | tuple[np.ndarray, ...], class_ids: list[int]
) -> np.ndarray:
    """The instanceIds map of a semantic map and (non-overlapping) instance masks: stuff pixels keep
    their class id, the k-th mask of a class (counted in the given order) gets class * 1000 + k."""
    if len(masks) != len(class_ids):
        raise ValueError(f"{len(masks)} masks but {len(class_ids)} class ids")
    out = label_ids.astype(np.int32)
    counts: dict[int, int] = {}
    for mask, class_id in zip(masks, class_ids):
        if mask.shape != label_ids.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the label map's {label_ids.shape}")
        label = ID_TO_LABEL.get(class_id)
        if label is None or not label.hasInstances:
            raise ValueError(f"class id {class_id} is not a Cityscapes class with instances")
        k = counts.get(class_id, 0)
        counts[class_id] = k + 1
        out[mask] = class_id * INSTANCE_OFFSET + k
    return out


@dataclass(frozen=True)
class CityscapesAnnotation:
    """A sample's ground truth as read from its two PNGs, already checked for consistency."""

    label_ids: np.ndarray  # uint8 (H, W)
    instance_ids: np.ndarray  # int32 (H, W)

    def instances(self) -> list[Instance]:
        """Individual instances (ids >= 1000) in increasing id order; groups and stuff are not instances."""
        return instances_of(self.instance_ids)


def instances_of(instance_ids: np.ndarray, class_ids: Collection[int] | None = None) -> list[Instance]:
    """The individual instances (ids >= 1000) of an instanceIds map in increasing id order, only those of
    `class_ids` when given; groups and stuff are not instances."""
    ids = np.unique(instance_ids)
    things = [int(i) for i in ids[ids >= INSTANCE_OFFSET]]
    return [Instance(i, i // INSTANCE_OFFSET, instance_ids == i) for i in things
            if class_ids is None or i // INSTANCE_OFFSET in class_ids]


def _read_gray(path: Path) -> np.ndarray:
    if not path.is_file():
        raise AnnotationError(path, None, "file not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise AnnotationError(path, None, "not a readable PNG")
    if image.ndim != 2:
        raise AnnotationError(path, None, f"expected a single-channel image, got shape {image.shape}")
    return image


def read_label_ids(path: str | Path) -> np.ndarray:
    path = Path(path)
    image = _read_gray(path)
    if image.dtype != np.uint8:
        raise AnnotationError(path, None, f"labelIds must be 8-bit, got {image.dtype}")
    unknown = np.setdiff1d(np.unique(image), list(ID_TO_LABEL))
    if unknown.size:
        raise AnnotationError(path, None, f"unknown label ids {unknown.tolist()}")
    return image


def read_instance_ids(path: str | Path) -> np.ndarray:
    path = Path(path)
    image = _read_gray(path)
    if image.dtype not in (np.uint8, np.uint16):
        raise AnnotationError(path, None, f"instanceIds must be 8- or 16-bit, got {image.dtype}")
    ids = np.unique(image).astype(np.int64)
    classes = class_of(ids)
    unknown = np.setdiff1d(classes, list(ID_TO_LABEL))
    if unknown.size:
        raise AnnotationError(path, None, f"instance ids of unknown classes {unknown.tolist()}")
    no_instances = [
        int(i) for i, c in zip(ids, classes) if i >= INSTANCE_OFFSET and not ID_TO_LABEL[int(c)].hasInstances
    ]
    if no_instances:
        raise AnnotationError(path, None, f"instance ids {no_instances} belong to classes without instances")
    return image.astype(np.int32)


def read_annotation(label_path: str | Path, instance_path: str | Path) -> CityscapesAnnotation:
    """Both maps of a sample; they must agree pixel by pixel on the class (as Cityscapes' own do)."""
    label_ids = read_label_ids(label_path)
    instance_ids = read_instance_ids(instance_path)
    if label_ids.shape != instance_ids.shape:
        raise AnnotationError(
            instance_path, None, f"size {instance_ids.shape} differs from {label_path}'s {label_ids.shape}"
        )
    wrong = class_of(instance_ids) != label_ids
    if wrong.any():
        y, x = np.argwhere(wrong)[0]
        raise AnnotationError(
            instance_path,
            None,
            f"{int(wrong.sum())} pixels disagree with {label_path} on the class, "
            f"first at (x={x}, y={y}): instance id {instance_ids[y, x]}, label id {label_ids[y, x]}",
        )
    return CityscapesAnnotation(label_ids, instance_ids)


def write_sample(
    root: str | Path,
    split: str,
    city: str,
    sequence: int,
    frame: int,
    image: np.ndarray,
    label_ids: np.ndarray,
    instance_ids: np.ndarray,
) -> CityscapesPaths:
    """Write a BGR image and its two maps in Cityscapes layout: 8-bit labelIds, 16-bit instanceIds."""
    if image.shape[:2] != label_ids.shape or instance_ids.shape != label_ids.shape:
        raise ValueError(
            f"image {image.shape[:2]}, labelIds {label_ids.shape} and instanceIds {instance_ids.shape} differ in size"
        )
    if label_ids.min() < 0 or label_ids.max() > 255 or instance_ids.min() < 0 or instance_ids.max() > 65535:
        raise ValueError("label ids must fit 8 bits and instance ids 16 bits")
    paths = sample_paths(root, split, city, sequence, frame)
    for path, array in (
        (paths.image, image),
        (paths.label_ids, label_ids.astype(np.uint8)),
        (paths.instance_ids, instance_ids.astype(np.uint16)),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), array):
            raise OSError(f"cannot write {path}")
    return paths
