"""Boundary patch refinement as a stage of the segmentation pipelines: a frame's instance masks in, the same
masks refined along their boundaries out (all patches of the frame in one batch through the shared
runtime), with the stage's time and patch count for /diagnostics.

A refiner model records the patch side it was trained on and its input side; the proposal NMS is the
node's (`boundary_nms`, by default `INFERENCE_NMS`: the training sets' 0.25, not the paper's denser 0.55 at
inference, which cost twice the time for the same held-out accuracy here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from refine_perception.models.bpr.refine import INFERENCE_NMS, PatchSettings, refine_masks
from refine_perception.models.bpr.weights import FORMAT
from refine_perception.models.threads import intra_op_threads
from refine_perception.runtime import Network, RuntimeConfig, open_task_network
from refine_perception.share import BOUNDARY_MODELS, shipped_model


def default_boundary_model_path(task: str) -> Path:
    """The shipped refiner of a task's segmenter ("sticks" or "street"): one per segmenter, as its masks'
    mistakes are what the refiner learnt to fix."""
    return shipped_model(BOUNDARY_MODELS[task])


@dataclass
class BoundaryTiming:
    """The last frame's refinement: milliseconds, instances and patches."""

    ms: float = 0.0
    instances: int = 0
    patches: int = 0

    @property
    def ms_per_instance(self) -> float:
        return self.ms / self.instances if self.instances else 0.0


class BoundaryStage:
    """Refines a frame's masks with the refiner network `network` (a runtime Network of the BPR kind)."""

    def __init__(self, network: Network, nms_threshold: float = INFERENCE_NMS, threads: int = 0) -> None:
        meta = network.metadata
        self.network = network
        self.settings = PatchSettings(int(meta["patch_size"]), int(meta["input_size"]), nms_threshold)
        self.threads = threads
        self.last = BoundaryTiming()
        self.info = network.info

    @classmethod
    def open(cls, model: str, task: str, config: RuntimeConfig, nms_threshold: float = INFERENCE_NMS) -> BoundaryStage:
        """The stage of refiner file `model` (empty: the task's shipped default) on the runtime `config` asks
        for. Raises ModelFileError, BackendError or UnsupportedCombination."""
        path = Path(model) if model else default_boundary_model_path(task)
        return cls(open_task_network(path, FORMAT, config), nms_threshold, config.threads)

    @classmethod
    def of_params(cls, params: object, task: str) -> BoundaryStage | None:
        """The stage a node's parameters (or a params mapping) ask for: None unless `refine_boundaries`; the
        refiner runs on the node's runtime parameters."""
        get = params.get if isinstance(params, dict) else lambda name: getattr(params, name)
        if not get("refine_boundaries"):
            return None
        config = RuntimeConfig.of_node(get("backend"), get("device"), get("precision"), get("threads"))
        return cls.open(get("boundary_model"), task, config, float(get("boundary_nms")))

    def diagnostic_values(self) -> dict[str, str]:
        last = self.last
        return {"boundary_ms": f"{last.ms:.1f}", "boundary_ms_per_instance": f"{last.ms_per_instance:.2f}",
                "boundary_patches": str(last.patches)}

    def _run(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.network(np.ascontiguousarray(patches.numpy(), dtype=np.float32))[0])

    def __call__(self, image_bgr: np.ndarray, masks: list[np.ndarray], nms_threshold: float | None = None
                 ) -> list[np.ndarray]:
        """The refined masks (`nms_threshold`: this frame's proposal NMS, default the stage's)."""
        if nms_threshold is not None and nms_threshold != self.settings.nms_threshold:
            self.settings = replace(self.settings, nms_threshold=nms_threshold)
        started = time.perf_counter()
        with intra_op_threads(self.threads):
            refined, patches = refine_masks(image_bgr, masks, self._run, self.settings)
        self.last = BoundaryTiming(1e3 * (time.perf_counter() - started), len(masks), patches)
        return refined
