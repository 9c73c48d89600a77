"""Camera images in, instances out: resize, the network (SpatialEmbeddings or discriminative loss), its
clustering (instances/decoders.py) and full-resolution masks with their rotated boxes, in one call shared
by evaluation, training's validation and the node.

Images of any size are resized to the model's input (as in training) and the whole batch goes through
the network at once; clustering runs at the network's resolution, where it is cheapest, and each mask
is brought back to its image's size by bilinear upsampling of its indicator, thresholded at 0.5. That
gives smoother outlines than repeating pixels and keeps masks disjoint, since at any pixel at most one
indicator can exceed one half. Only the window around each mask is resampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from refine_perception.instances.decoders import FORMATS, InstanceDecoder, decoder_of
from refine_perception.instances.result import InstanceResult, OrientedBox
from refine_perception.models.discriminative import weights as discriminative_weights
from refine_perception.models.discriminative.network import DiscriminativeNet
from refine_perception.models.preprocess import crop_resize, to_network
from refine_perception.models.spatial_embeddings import weights as spatial_weights
from refine_perception.models.spatial_embeddings.clustering import Clusters, ClusterSettings
from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
from refine_perception.models.threads import intra_op_threads
from refine_perception.runtime import BackendInfo, RuntimeConfig, open_task_network

Network = Callable[[np.ndarray], np.ndarray]  # (B, 3, H, W) float32 in [0, 1] -> raw output (B, C, H, W)
EAGER_CPU = RuntimeConfig(backend="torch", device="cpu", precision="fp32")


def torch_network(model: torch.nn.Module, device: str | torch.device = "cpu") -> Network:
    """An instance network as a Network, run eagerly on `device`."""
    model = model.to(device).eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return run


def upsample_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool (h, w) mask at (height, width) = `size`: bilinear resampling of its indicator (pixel
    centres aligned as in cv2.resize, edges replicated) thresholded at 0.5, computed only over the
    window the mask can reach."""
    height, width = size
    out = np.zeros(size, bool)
    rows, cols = np.nonzero(np.any(mask, axis=1))[0], np.nonzero(np.any(mask, axis=0))[0]
    if rows.size == 0:
        return out
    scale_y, scale_x = mask.shape[0] / height, mask.shape[1] / width  # source pixels per output pixel
    # the source crop keeps one empty pixel around the mask (unless at the border), which the
    # replicated border then extends with zeros, exactly as the full image would
    top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])
    left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])
    # output pixel y samples source row (y + 0.5) * scale_y - 0.5; beyond a row's neighbours it reads 0
    y0 = max(math.floor((rows[0] - 0.5) / scale_y - 0.5), 0)
    y1 = min(math.ceil((rows[-1] + 1.5) / scale_y - 0.5) + 1, height)
    x0 = max(math.floor((cols[0] - 0.5) / scale_x - 0.5), 0)
    x1 = min(math.ceil((cols[-1] + 1.5) / scale_x - 0.5) + 1, width)
    to_source = np.array([[scale_x, 0.0, (x0 + 0.5) * scale_x - 0.5 - left],
                          [0.0, scale_y, (y0 + 0.5) * scale_y - 0.5 - top]])
    window = cv2.warpAffine(mask[top:bottom, left:right].astype(np.float32), to_source, (x1 - x0, y1 - y0),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    out[y0:y1, x0:x1] = window > 0.5
    return out


def oriented_box(mask: np.ndarray) -> OrientedBox | None:
    """The minimum-area rectangle around a bool mask's pixels (as unit squares), or None when empty:
    centre, long side `length` at angle `theta` from +x towards +y in (-pi/2, pi/2], short side `width`."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    centres = np.concatenate(contours).reshape(-1, 1, 2).astype(np.float32)
    corners = centres + np.array([[[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]], np.float32)
    rect = cv2.minAreaRect(corners.reshape(-1, 2))
    # the side directions from the rectangle's corners, not OpenCV's angle convention (which changed in 4.5)
    p0, p1, p2, _ = cv2.boxPoints(rect).astype(np.float64)
    long_side, short_side = sorted((p1 - p0, p2 - p1), key=lambda side: float(np.hypot(*side)), reverse=True)
    theta = math.atan2(long_side[1], long_side[0])
    theta = math.pi / 2 - (math.pi / 2 - theta) % math.pi  # the same line, with theta in (-pi/2, pi/2]
    return OrientedBox(float(rect[0][0]), float(rect[0][1]), theta, float(np.hypot(*long_side)),
                       float(np.hypot(*short_side)))


class InstancePredictor:
    """Runs an instance network on BGR uint8 images and returns each image's instances in the order its
    decoder found them (class by class); one too small to survive the resizing to the image is left out.
    `settings` are the node's clustering knobs (see instances/decoders.py for what each kind uses)."""

    def __init__(self, network: Network, input_size: tuple[int, int], decoder: InstanceDecoder,
                 class_names: Sequence[str], settings: ClusterSettings = ClusterSettings(), threads: int = 0) -> None:
        self.threads = threads  # CPU threads of the network and the clustering; 0: torch's default
        self.network = network
        self.input_size = input_size
        self.decoder = decoder
        self.class_names = tuple(class_names)
        self.settings = settings
        self.metadata: dict[str, Any] = {}  # the model file's, when read from one

    @classmethod
    def from_model(cls, model: SpatialEmbeddingNet | DiscriminativeNet, settings: ClusterSettings = ClusterSettings(),
                   device: str | torch.device = "cpu", threads: int = 0) -> InstancePredictor:
        """The predictor of a SpatialEmbeddingNet or a DiscriminativeNet, run eagerly."""
        weights = discriminative_weights if isinstance(model, DiscriminativeNet) else spatial_weights
        return cls(torch_network(model, device), model.input_size, decoder_of(weights.file_header(model)),
                   model.class_names, settings, threads)

    @classmethod
    def from_file(cls, path: str | Path, settings: ClusterSettings = ClusterSettings(),
                  config: RuntimeConfig = EAGER_CPU) -> tuple[InstancePredictor, BackendInfo]:
        """The predictor of the model file at `path` (either instance kind) on the runtime backend `config`
        asks for, and what runs it. Raises ModelFileError, BackendError or UnsupportedCombination."""
        network = open_task_network(path, FORMATS, config)
        meta = network.metadata

        def run(batch: np.ndarray) -> np.ndarray:
            return network(batch)[0]

        predictor = cls(run, network.input_size, decoder_of(meta), meta["class_names"], settings, config.threads)
        predictor.metadata = meta
        return predictor, network.info

    def inputs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return to_network(np.stack([crop_resize(image, 0, self.input_size) for image in images]))

    def clusters(self, images: Sequence[np.ndarray]) -> list[Clusters]:
        """Each image's instances at the network's resolution."""
        if not images:
            return []
        with intra_op_threads(self.threads):
            return self.decoder(self.network(self.inputs(images)), self.settings)

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[InstanceResult]]:
        return [self.results(found, image.shape[:2]) for found, image in zip(self.clusters(images), images)]

    def results(self, found: Clusters, size: tuple[int, int]) -> list[InstanceResult]:
        """Instances at the network's resolution as full-resolution results for an image of (height, width) `size`."""
        results = []
        for k, (score, class_id) in enumerate(zip(found.scores, found.class_ids)):
            mask = upsample_mask(found.instance_map == k + 1, size)
            if mask.any():
                results.append(InstanceResult(mask, float(score), int(class_id), self.class_names[class_id],
                                              oriented_box(mask)))
        return results
