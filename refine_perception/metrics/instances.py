"""What the instance metrics take and give: per image a list of ground-truth or predicted instances
(class id, mask, score), and an AP result that prints as a table and serialises to JSON.

A mask is a (H, W) bool / 0-1 array or a COCO RLE dict {"size": [H, W], "counts": ...} with compressed
(str / bytes) or plain (list) counts; RLE keeps thousands of predictions cheap to hold in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from refine_perception.core import rle
from refine_perception.metrics.table import format_table

MaskLike = np.ndarray | Mapping[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class GtInstance:
    class_id: int
    mask: MaskLike
    iscrowd: bool = False  # COCO crowd region: matches any number of predictions, never counts as missed


@dataclass(frozen=True)
class PredInstance:
    class_id: int
    mask: MaskLike
    score: float


def _from_dict(convert: Callable[[np.ndarray, int, int], T], mask: Mapping[str, Any], where: str) -> T:
    """`convert(counts, height, width)` of a COCO RLE dict; any problem is a ValueError naming `where`."""
    size, counts = mask.get("size"), mask.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ValueError(f"{where}: RLE 'size' must be [height, width], got {size!r}")
    try:
        runs = rle.from_coco_string(counts) if isinstance(counts, (str, bytes)) else np.asarray(counts)
        return convert(runs, size[0], size[1])
    except rle.RLEError as error:
        raise ValueError(f"{where}: RLE {error}") from None


def _mask_array(mask: np.ndarray, where: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{where}: a mask must be a non-empty 2-D array, got shape {array.shape}")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise ValueError(f"{where}: a mask array must hold only 0 and 1 (or bools)")
    return array.astype(bool, copy=False)


def to_rle(mask: MaskLike, where: str) -> dict[str, Any]:
    """COCO RLE dict with compressed counts, what pycocotools works on; `where` names the instance in
    error messages."""
    if isinstance(mask, Mapping):
        return _from_dict(rle.to_coco_dict, mask, where)
    array = _mask_array(mask, where)
    return rle.to_coco_dict(rle.encode(array), *array.shape)


def to_mask(mask: MaskLike, where: str) -> np.ndarray:
    """(H, W) bool array of a mask."""
    if isinstance(mask, Mapping):
        return _from_dict(rle.decode, mask, where)
    return _mask_array(mask, where)


def _run_pixels(runs: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    runs = np.asarray(runs)
    if runs.ndim != 1 or runs.dtype.kind not in "iu" or (runs.size and runs.min() < 0) or runs.sum() != height * width:
        raise rle.RLEError(f"counts must be non-negative integers adding up to {height}x{width} = {height * width}")
    runs = runs.astype(np.int64)
    length = runs[1::2]  # the foreground runs, in column-major order
    start = np.cumsum(runs)[1::2] - length
    column_major = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(length.sum())
    col, row = np.divmod(column_major, height)
    return row * width + col, (height, width)


def foreground_pixels(mask: MaskLike, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Row-major flat indices of a mask's pixels and its (height, width); an RLE is read run by run
    without decoding the whole image, so the cost follows the mask's area."""
    if isinstance(mask, Mapping):
        return _from_dict(_run_pixels, mask, where)
    array = _mask_array(mask, where)
    return np.flatnonzero(array), array.shape


def check_class_score(class_id: object, score: object | None, where: str) -> None:
    if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
        raise ValueError(f"{where}: class_id must be an integer, got {class_id!r}")
    if score is None:
        return
    if isinstance(score, bool) or not isinstance(score, (int, float, np.number)) or not math.isfinite(score):
        raise ValueError(f"{where}: score must be a finite number, got {score!r}")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks of one size; 0 when both are empty."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def percent(value: float) -> str:
    """A fraction as a table cell: percent with two decimals, '-' for NaN."""
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def json_float(value: float) -> float | None:
    """JSON has no NaN: undefined figures become null."""
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class APResult:
    """Summary figures (fractions in [0, 1], NaN where undefined) and the same per class."""

    title: str
    summary: dict[str, float]
    per_class: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        per_class = {name: {k: json_float(v) for k, v in values.items()} for name, values in self.per_class.items()}
        return {"summary": {k: json_float(v) for k, v in self.summary.items()}, "per_class": per_class}

    def table(self) -> str:
        """Per-class rows, then the summary row; figures in percent."""
        class_keys = list(next(iter(self.per_class.values()), {}))
        rows = [["class", *class_keys]]
        rows += [[name, *(percent(v[k]) for k in class_keys)] for name, v in self.per_class.items()]
        summary = format_table([["", *self.summary], ["all", *(percent(v) for v in self.summary.values())]])
        return f"{self.title}\n{format_table(rows)}\n\n{summary}"

    def __str__(self) -> str:
        return self.table()
