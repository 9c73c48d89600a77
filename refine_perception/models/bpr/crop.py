"""Cutting BPR's patches out of an image and its coarse mask, all patches of a frame in one batch.

The sampling is roi_align's with one sample per output pixel: output pixel (i, j) of a box x0, y0, x1, y1
reads the source at x0 + (j + 0.5) * w / S - 0.5 (pixel centres), bilinearly for the image and at the
nearest pixel for the mask, which enters the network as -1 (background) / +1 (mask), as the paper feeds it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _grid(boxes: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """(K, S, S, 2) sampling grid of grid_sample (align_corners=False) for the boxes (K, 4) x0, y0, x1, y1."""
    steps = (torch.arange(size, dtype=torch.float32, device=boxes.device) + 0.5) / size  # (S,) in (0, 1)
    x0, y0, x1, y1 = (boxes[:, k : k + 1].float() for k in range(4))
    xs = x0 + steps * (x1 - x0)  # (K, S) source coordinates where pixel centres are at +0.5
    ys = y0 + steps * (y1 - y0)
    gx = (xs / width * 2 - 1)[:, None, :].expand(-1, size, -1)
    gy = (ys / height * 2 - 1)[:, :, None].expand(-1, -1, size)
    return torch.stack([gx, gy], dim=-1)


def crop_patches(image: torch.Tensor, mask: torch.Tensor, boxes: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """(K, 4, S, S): the image crops (3 channels as given) and the mask crops in {-1, +1} of the boxes
    (K, 4) x0, y0, x1, y1 (exclusive) over `image` (3, H, W) float and `mask` (H, W) bool, at S = `size`."""
    if image.ndim != 3 or image.shape[0] != 3 or mask.shape != image.shape[1:]:
        raise ValueError(f"expected image (3, H, W) and mask (H, W), got {tuple(image.shape)} and {tuple(mask.shape)}")
    boxes = torch.as_tensor(boxes, device=image.device)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected boxes (K, 4), got {tuple(boxes.shape)}")
    if len(boxes) == 0:
        return image.new_zeros((0, 4, size, size))
    height, width = mask.shape
    grid = _grid(boxes, size, height, width)
    count = len(boxes)
    pixels = F.grid_sample(image[None].expand(count, -1, -1, -1), grid, mode="bilinear", align_corners=False)
    masks = F.grid_sample(mask[None, None].float().expand(count, -1, -1, -1), grid, mode="nearest",
                          align_corners=False)
    return torch.cat([pixels, masks * 2 - 1], dim=1)
