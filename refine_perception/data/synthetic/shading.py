"""Shading shared by the street and sticks generators: noise textures, sun light, the camera's look."""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Band-limited noise with about unit amplitude and features `cell` pixels wide, (H, W) float32."""
    rows, cols = int(height / cell) + 3, int(width / cell) + 3
    coarse = rng.standard_normal((rows, cols)).astype(np.float32)
    fine = cv2.resize(coarse, (int(cols * cell), int(rows * cell)), interpolation=cv2.INTER_CUBIC)
    return fine[:height, :width]


def apply_light(
    albedo: np.ndarray,
    normal: np.ndarray,
    light: np.ndarray,
    shadow: np.ndarray,
    ambient: float,
    shiny: np.ndarray,
    view: np.ndarray | None = None,
) -> np.ndarray:
    """Lambert shading with a Blinn highlight: `light` points to the sun, `shadow` (0..1) removes its
    direct part, `shiny` (0..1 per pixel) scales the highlight, `view` points to the camera (straight up
    when not given). Returns colour, (H, W, 3) float32."""
    light = light.astype(np.float32)
    lit = np.clip(normal @ light, 0, 1) * (1 - shadow)
    half = light + (np.array([0, 0, 1], np.float32) if view is None else view)
    half /= np.sqrt(np.einsum("...k,...k->...", half, half))[..., None]
    highlight = np.clip(np.einsum("...k,...k->...", normal, half), 0, 1) ** 40 * shiny * (1 - shadow)
    return albedo * (ambient + (1 - ambient) * lit)[..., None] + 0.6 * highlight[..., None]


def finish_image(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera look on colour in [0, 1]: slight blur (anti-aliasing), luminance noise, 8 bits."""
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.5, 0.8))
    noise = rng.standard_normal(image.shape[:2], dtype=np.float32) * np.float32(rng.uniform(0.004, 0.012))
    image += noise[..., None]
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
