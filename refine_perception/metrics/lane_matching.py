"""Which predicted lane answers which ground-truth lane, and how often its type and colour are right.

Every lane score that looks at matched pairs (type/colour accuracy, tracking id switches, precision and
recall against the score threshold) takes them from `true_positive_pairs`, so it counts over exactly the
lanes CULane's F1 counts as true positives: the official Kuhn-Munkres matching, then IoU strictly above
the threshold (`culane.is_true_positive`, the comparison `culane_f1` applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from refine_perception.metrics.culane import is_true_positive, official_matching

TP_IOU = 0.5  # the IoU threshold of F1@50, at which lane attributes and id switches are judged


def true_positive_pairs(ious: np.ndarray, threshold: float = TP_IOU) -> list[tuple[int, int]]:
    """(ground truth, prediction) index pairs of one image that CULane counts as true positives at
    `threshold`, given the image's IoU matrix (ground truth x prediction)."""
    if ious.size == 0:
        return []
    match = official_matching(ious)
    return [(gt, int(pred)) for gt, pred in enumerate(match) if pred >= 0 and is_true_positive(ious[gt, pred], threshold)]


@dataclass
class AttributeTally:
    """Matched lanes whose type / colour was predicted right, out of those whose truth is annotated."""

    type_right: int = 0
    type_total: int = 0
    color_right: int = 0
    color_total: int = 0

    def add(self, pairs: Sequence[tuple[int, int]], truth_types: Sequence[int], truth_colors: Sequence[int],
            pred_types: Sequence[int], pred_colors: Sequence[int], unlabelled: int) -> None:
        """Count the `pairs` of one image; a truth label equal to `unlabelled` is left out."""
        for gt, pred in pairs:
            if truth_types[gt] != unlabelled:
                self.type_total += 1
                self.type_right += int(pred_types[pred] == truth_types[gt])
            if truth_colors[gt] != unlabelled:
                self.color_total += 1
                self.color_right += int(pred_colors[pred] == truth_colors[gt])

    @property
    def type_accuracy(self) -> float | None:
        """None when no matched lane had an annotated type."""
        return self.type_right / self.type_total if self.type_total else None

    @property
    def color_accuracy(self) -> float | None:
        return self.color_right / self.color_total if self.color_total else None
