"""The image side of the networks' input pipelines, shared by training, evaluation and the nodes of
every task (CLRNet lanes, SpatialEmbeddings instances), so no model family owns it.

As in the official CLRNet pipeline: drop the top `cut_height` rows (sky, bonnet-free CULane framing), resize
the rest to the network input, keep OpenCV's BGR order and divide by 255. Shrinking uses area
averaging, which keeps thin far-away markings that bilinear or bicubic sampling would alias away;
enlarging uses bilinear. The same function runs in training and at inference, so a model never sees
another resampling than the one it learnt on.
"""

from __future__ import annotations

import cv2
import numpy as np


def crop_resize(image: np.ndarray, cut_height: int, input_size: tuple[int, int]) -> np.ndarray:
    """The uint8 (H, W, 3) network-sized view of a BGR camera image; input_size is (height, width)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) BGR image, got {image.dtype} {image.shape}")
    if not 0 <= cut_height < image.shape[0]:
        raise ValueError(f"cut_height {cut_height} leaves nothing of an image {image.shape[0]} rows high")
    height, width = input_size
    cropped = image[cut_height:]
    shrinking = width < cropped.shape[1] and height < cropped.shape[0]
    return cv2.resize(cropped, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_network(images: np.ndarray) -> np.ndarray:
    """float32 (B, 3, H, W) in [0, 1] from uint8 network-sized images (B, H, W, 3) or one (H, W, 3)."""
    batch = images[None] if images.ndim == 3 else images
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1.0 / 255.0)
