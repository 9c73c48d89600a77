"""Preview grids: many samples tiled into one picture for a quick look at a dataset."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def grid(images: Sequence[np.ndarray], cols: int = 4, tile_width: int = 480, gap: int = 4) -> np.ndarray:
    """Tile BGR (or gray) images into one BGR image; each tile keeps its aspect ratio at `tile_width`."""
    if not images:
        raise ValueError("grid() needs at least one image")
    tiles = []
    for image in images:
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        height = round(image.shape[0] * tile_width / image.shape[1])
        tiles.append(cv2.resize(image, (tile_width, height), interpolation=cv2.INTER_AREA))
    tile_height = max(t.shape[0] for t in tiles)
    rows = -(-len(tiles) // cols)
    canvas = np.full(
        (rows * tile_height + (rows + 1) * gap, cols * tile_width + (cols + 1) * gap, 3), 32, np.uint8
    )
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = gap + r * (tile_height + gap), gap + c * (tile_width + gap)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return canvas
