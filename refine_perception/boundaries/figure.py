"""The picture of what boundary refinement changes: per frame, the instance whose mask it changed most, in a
zoomed window around the change, unrefined beside refined, each over the true outlines. Written by the
held-out tests (`refine-train evaluate instances|street --boundary-model M --figure F`), so the README's
comparison comes from the same frames as its figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

TRUTH = (80, 220, 80)       # BGR: green outline of every true object
UNREFINED = (60, 60, 230)   # red
REFINED = (230, 160, 40)    # blue


@dataclass
class RefinedFrame:
    """One frame's image, true masks, and the same predicted masks before and after refinement."""

    image: np.ndarray
    truth: list[np.ndarray]
    unrefined: list[np.ndarray]
    refined: list[np.ndarray]

    def most_changed(self) -> int | None:
        """The instance whose mask refinement changed in the most pixels, or None when none changed."""
        changes = [int(np.count_nonzero(a ^ b)) for a, b in zip(self.unrefined, self.refined)]
        return int(np.argmax(changes)) if changes and max(changes) > 0 else None


def _outline(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, 1)


def _panel(frame: RefinedFrame, masks: list[np.ndarray], k: int, window: tuple[int, int, int, int], zoom: int,
           colour: tuple[int, int, int], title: str) -> np.ndarray:
    x0, y0, x1, y1 = window
    size = ((x1 - x0) * zoom, (y1 - y0) * zoom)
    canvas = cv2.resize(frame.image[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)

    def zoomed(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask[y0:y1, x0:x1].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    tint = zoomed(masks[k])
    canvas[tint] = (0.6 * canvas[tint] + 0.4 * np.array(colour)).astype(np.uint8)
    for truth in frame.truth:
        _outline(canvas, zoomed(truth), TRUTH)
    _outline(canvas, tint, colour)
    cv2.putText(canvas, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(canvas, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 1, cv2.LINE_AA)
    return canvas


def comparison_figure(frames: Sequence[RefinedFrame], window: int = 120, zoom: int = 3) -> np.ndarray | None:
    """Rows of (unrefined | refined) panels of `window` image pixels shown `zoom` times larger, one per frame
    where refinement changed something, centred on the changed pixels of its most changed instance; None
    when it changed nothing anywhere."""
    rows = []
    for frame in frames:
        k = frame.most_changed()
        if k is None:
            continue
        height, width = frame.image.shape[:2]
        ys, xs = np.nonzero(frame.unrefined[k] ^ frame.refined[k])
        side_x, side_y = min(window, width), min(window, height)
        x0 = int(np.clip(np.median(xs) - side_x // 2, 0, width - side_x))
        y0 = int(np.clip(np.median(ys) - side_y // 2, 0, height - side_y))
        box = (x0, y0, x0 + side_x, y0 + side_y)
        gap = np.full((side_y * zoom, 4, 3), 255, np.uint8)
        rows.append(np.hstack([_panel(frame, frame.unrefined, k, box, zoom, UNREFINED, "unrefined"), gap,
                               _panel(frame, frame.refined, k, box, zoom, REFINED, "refined")]))
    if not rows:
        return None
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.vstack(rows)
