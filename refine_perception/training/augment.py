"""CLRNet's training augmentations on a network-sized BGR image and its lane points, in OpenCV; the
instance models get the same steps on their image and instance-id map.

The official pipeline (imgaug) applies, in this order: horizontal flip, channel shuffle, brightness
multiply-and-add, hue and saturation shift, motion or median blur, and an affine warp (translate, rotate,
scale about the centre, black border). Lane points follow the geometric steps exactly; lanes pushed out
of the image simply lose their outside rows when the targets are encoded. Every random draw comes from
the generator passed in, so a sample's augmentation is a function of its seed (exact resumption).
"""

from __future__ import annotations

import cv2
import numpy as np

from refine_perception.training.config import AugmentConfig

Lanes = list[np.ndarray]


def augment(
    image: np.ndarray, lanes: Lanes, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, Lanes]:
    """Augmented copies of a uint8 (H, W, 3) image and its (N, 2) lanes in the image's pixels; lanes stay
    ordered left to right."""
    height, width = image.shape[:2]
    if rng.random() < config.flip:
        image = image[:, ::-1]
        lanes = [np.column_stack([width - 1 - lane[:, 0], lane[:, 1]]) for lane in lanes[::-1]]
    image = _photometric(image, config, rng)
    if rng.random() < config.affine:
        matrix = _affine_matrix(rng, config, width, height)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        lanes = [lane @ matrix[:, :2].T + matrix[:, 2] for lane in lanes]
    return np.ascontiguousarray(image), lanes


def augment_instances(
    image: np.ndarray, instances: np.ndarray, config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented copies of a uint8 (H, W, 3) image and its (H, W) instance-id map (0 = background): the
    map follows the flip and the warp with nearest-neighbour sampling, so ids never blend."""
    height, width = image.shape[:2]
    if rng.random() < config.flip:
        image, instances = image[:, ::-1], instances[:, ::-1]
    image = _photometric(image, config, rng)
    if rng.random() < config.affine:
        matrix = _affine_matrix(rng, config, width, height)
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        instances = cv2.warpAffine(np.ascontiguousarray(instances), matrix, (width, height),
                                   flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.ascontiguousarray(image), np.ascontiguousarray(instances)


def _photometric(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < config.channel_shuffle:
        image = image[:, :, rng.permutation(3)]
    if rng.random() < config.brightness:
        gain = rng.uniform(*config.brightness_mul)
        bias = rng.uniform(-config.brightness_add, config.brightness_add)
        image = cv2.convertScaleAbs(image, alpha=gain, beta=bias)
    if rng.random() < config.hue_saturation:
        image = _shift_hue_saturation(image, rng, config.hue_saturation_add)
    if rng.random() < config.blur:
        image = _blur(image, rng)
    return image


def _shift_hue_saturation(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    # imgaug's shift is in 0..255 hue units; OpenCV's 8-bit hue runs 0..179
    hue_shift = int(round(rng.uniform(-amount, amount) * 180 / 255))
    saturation_shift = int(round(rng.uniform(-amount, amount)))
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + hue_shift) % 180).astype(np.uint8)
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.int16) + saturation_shift, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = int(rng.choice((3, 5)))
    image = np.ascontiguousarray(image)
    if rng.random() < 0.5:
        return cv2.medianBlur(image, size)
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0 / size
    rotation = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), rng.uniform(0, 360), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (size, size))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6))


def _affine_matrix(rng: np.random.Generator, config: AugmentConfig, width: int, height: int) -> np.ndarray:
    angle = rng.uniform(-config.rotate, config.rotate)
    scale = rng.uniform(*config.scale)
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, scale)
    matrix[0, 2] += rng.uniform(-config.translate, config.translate) * width
    matrix[1, 2] += rng.uniform(-config.translate, config.translate) * height
    return matrix
