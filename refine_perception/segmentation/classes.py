"""The street classes and how Cityscapes label ids map onto a network's class indices.

A network predicts class indices 0..C-1; ground truth and published label images use Cityscapes label
ids (plus the project's lane marking, id 34). The model file records the label id of every class, so the
mapping travels with the weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from refine_perception.data.formats.cityscapes import LABELS

IGNORE_LABEL = 255  # the class index of void pixels, in training targets and evaluation

# what the synthetic street generator draws (curbs are sidewalk), in Cityscapes label-id order
STREET_CLASSES = ("road", "sidewalk", "building", "pole", "vegetation", "sky", "person", "car", "lane marking")
STREET_INSTANCE_CLASSES = ("person", "car")
_ID_BY_NAME = {label.name: label.id for label in LABELS}
_THINGS = {label.name for label in LABELS if label.hasInstances}


def has_instances(name: str) -> bool:
    """Whether Cityscapes annotates objects of this class one by one (cars, persons), not only as a region."""
    return name in _THINGS


def label_ids_of(names: Sequence[str]) -> tuple[int, ...]:
    """The Cityscapes label id of each class name (ValueError naming the unknown ones)."""
    unknown = [name for name in names if name not in _ID_BY_NAME]
    if unknown:
        raise ValueError(f"unknown class names {unknown}; Cityscapes has {sorted(_ID_BY_NAME)}")
    return tuple(_ID_BY_NAME[name] for name in names)


def class_lookup(label_ids: Sequence[int]) -> np.ndarray:
    """(65536,) uint8: the class index of each label id, IGNORE_LABEL for ids of no class (void, or a class
    the network does not have). Indexing it with a label-id map gives the class-index map."""
    if len(label_ids) >= IGNORE_LABEL:
        raise ValueError(f"at most {IGNORE_LABEL - 1} classes, got {len(label_ids)}")
    table = np.full(1 << 16, IGNORE_LABEL, np.uint8)
    table[np.asarray(label_ids, np.int64)] = np.arange(len(label_ids), dtype=np.uint8)
    return table
