"""Camera images in, lanes out: pre-processing, the network and decoding in one call.

Shared by validation during training, the held-out evaluation and the lanes node, so every place runs
exactly the same pipeline. Images of any size are accepted; each is cropped by `cut_height` and decoded
back to its own size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from refine_perception.models.clrnet.decode import DecodeSettings, decode_lanes
from refine_perception.models.clrnet.model import CLRNet, CLRNetOutput
from refine_perception.models.preprocess import crop_resize, to_network


@dataclass(frozen=True)
class LanePrediction:
    """Lanes of one image, best first: (N, 2) original-image points bottom to top, scores, and the
    argmax type / colour index (into LANE_TYPES / LANE_COLORS) with its probability."""

    lanes: list[np.ndarray]
    scores: np.ndarray
    types: np.ndarray
    type_scores: np.ndarray
    colors: np.ndarray
    color_scores: np.ndarray


def _argmax_softmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if logits.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return probs.argmax(axis=1).astype(np.int64), probs.max(axis=1).astype(np.float64)


def decode_output(lanes: np.ndarray, types: np.ndarray, colors: np.ndarray,
                  settings: DecodeSettings) -> LanePrediction:
    """One image's decoded lanes from its (192, 78) lanes and (192, C) type / colour logits."""
    decoded = decode_lanes(lanes, settings)
    type_idx, type_p = _argmax_softmax(types[decoded.indices])
    color_idx, color_p = _argmax_softmax(colors[decoded.indices])
    return LanePrediction(decoded.lanes, decoded.scores, type_idx, type_p, color_idx, color_p)


Network = Callable[[np.ndarray], Sequence[np.ndarray]]  # (B, 3, H, W) float32 -> lanes, types, colours


def torch_network(model: CLRNet, device: str | torch.device = "cpu") -> Network:
    """A CLRNet as a Network, run eagerly on `device` (the lanes node's backends offer faster ones)."""
    model = model.to(device).eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> Sequence[np.ndarray]:
        output: CLRNetOutput = model(torch.from_numpy(batch).to(device))
        return [t.float().cpu().numpy() for t in output]

    return run


class LanePredictor:
    """Runs a network on BGR uint8 camera images; `settings` gives cut height and decoding thresholds
    (its original size is replaced by each image's own)."""

    def __init__(self, network: Network, input_size: tuple[int, int], settings: DecodeSettings) -> None:
        self.network = network
        self.input_size = input_size
        self.settings = settings

    @classmethod
    def from_model(cls, model: CLRNet, settings: DecodeSettings, device: str | torch.device = "cpu") -> LanePredictor:
        return cls(torch_network(model, device), model.input_size, settings)

    def inputs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack([crop_resize(image, self.settings.cut_height, self.input_size) for image in images])
        return to_network(batch)

    def __call__(self, images: Sequence[np.ndarray]) -> list[LanePrediction]:
        if not images:
            return []
        lanes, types, colors = self.network(self.inputs(images))
        return [
            decode_output(lanes[k], types[k], colors[k],
                          dataclasses.replace(self.settings, ori_width=image.shape[1], ori_height=image.shape[0]))
            for k, image in enumerate(images)
        ]
