"""`refine-train bpr`: patches along a segmenter's masks with targets from the best-matching object, drawn per
scene and epoch (repeats and empty scenes flagged), a loss that falls on a coarse segmenter's mistakes, and the
command end to end on a model file (validation next to the unrefined masks, an fp16 export the runtime opens)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from instance_checks import write_banded_model
from training_checks import refine_train

from refine_perception.models.bpr.network import BoundaryRefiner
from refine_perception.models.bpr.refine import PatchSettings
from refine_perception.training.bpr_data import BPRPatchSet, sticks_truth
from refine_perception.training.bpr_task import BPRTask
from refine_perception.training.config import BPRDataConfig, BPRTrainConfig, ConfigError, SticksDataConfig, from_dict
from refine_perception.training.instance_data import SticksSource

SCENES = SticksDataConfig(kind="synthetic", seed=21, size=4, image_width=160, image_height=120)
SETTINGS = PatchSettings(patch_size=32, input_size=32, nms_threshold=0.25)


def coarse_set(count: int = 6, flip: float = 0.0) -> BPRPatchSet:
    """The scenes with a segmenter whose only mistakes are at the boundary: each stick's true mask shrunk by
    a pixel (looked up by the image it is given)."""
    kernel = np.ones((3, 3), np.uint8)
    source = SticksSource(SCENES)
    coarse = {}
    for k in range(len(source)):
        image, ids = source[k]
        coarse[image.tobytes()] = [(c, cv2.erode(m.astype(np.uint8), kernel).astype(bool)) for c, m in sticks_truth(ids)]
    data = BPRDataConfig(segmenter="unused", sticks=(SCENES,), patches_per_scene=count)
    return BPRPatchSet(data, SETTINGS, flip, seed=1, segmenter=lambda image: coarse[image.tobytes()])


def test_patches_targets_and_flags() -> None:
    dataset = coarse_set(count=500)  # more than any scene has: repeats are flagged
    inputs, targets, valid = dataset[0]
    assert inputs.shape == (500, 4, 32, 32) and targets.shape == (500, 32, 32) and valid.dtype == torch.bool
    assert 0 < int(valid.sum()) < 500 and valid[: int(valid.sum())].all()
    assert set(inputs[:, 3].unique().tolist()) <= {-1.0, 1.0} and set(targets.unique().tolist()) <= {0.0, 1.0}
    # the coarse mask is the truth shrunk: the target holds every mask pixel and more
    assert bool(((inputs[:, 3] > 0) <= (targets > 0)).all()) and bool((targets > (inputs[:, 3] > 0)).any())
    again = dataset[0]
    assert torch.equal(again[0], inputs)  # the draw depends on (seed, epoch, index) only
    dataset.set_epoch(1)
    assert not torch.equal(coarse_set(count=8)[0][0], (dataset[0][0]))


def test_flips_keep_patch_and_target_together() -> None:
    plain, flipped = coarse_set(flip=0.0)[1], coarse_set(flip=1.0)[1]
    assert torch.equal(flipped[0], plain[0].flip(-1)) and torch.equal(flipped[1], plain[1].flip(-1))


def test_the_loss_falls_on_a_coarse_segmenters_patches() -> None:
    torch.manual_seed(0)
    config = BPRTrainConfig(train=BPRDataConfig(segmenter="x", sticks=(SCENES,)))
    task = BPRTask(config)
    model = BoundaryRefiner((8, 16), patch_size=32, input_size=32)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    dataset = coarse_set(count=16)
    batch = [dataset[k] for k in range(4)]
    inputs, (targets, valid) = torch.cat([b[0] for b in batch]), (torch.cat([b[1] for b in batch]),
                                                                   torch.cat([b[2] for b in batch]))
    losses = []
    for _ in range(40):
        loss, _ = task.loss(model(inputs), (targets, valid))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    empty, _ = task.loss(model(inputs[:2]), (targets[:2], torch.zeros(2, dtype=torch.bool)))
    assert float(empty.detach()) == 0.0


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="needs a segmenter"):
        from_dict(BPRTrainConfig, {"train": {"sticks": [{"kind": "synthetic"}]}})
    with pytest.raises(ConfigError, match="only flip"):
        from_dict(BPRTrainConfig, {"train": {"segmenter": "m", "sticks": [{}]}, "augment": {"affine": 0.5}})
    with pytest.raises(ConfigError, match="multiple of 4"):
        from_dict(BPRTrainConfig, {"train": {"segmenter": "m", "sticks": [{}]}, "model": {"input_size": 30}})


def test_refine_train_bpr_end_to_end(tmp_path: Path) -> None:
    segmenter = write_banded_model(tmp_path / "banded.safetensors", (64, 96))
    scenes = {"kind": "synthetic", "seed": 21, "size": 2, "image_width": 160, "image_height": 120}
    tree = {"model": {"channels": [4, 8], "patch_size": 32, "input_size": 32},
            "train": {"segmenter": str(segmenter), "sticks": [scenes], "patches_per_scene": 4},
            "val": {"data": {"segmenter": str(segmenter), "sticks": [scenes]}},
            "optim": {"epochs": 2, "batch_size": 1, "amp": False},
            "run": {"out": str(tmp_path / "run"), "workers": 0, "threads": 1, "log_every": 1}}
    config = tmp_path / "bpr.yaml"
    config.write_text(yaml.safe_dump(tree))

    assert "weights:" in refine_train("bpr", "--config", str(config), "--no-progress")
    lines = [json.loads(line) for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    val = [entry for entry in lines if entry["group"] == "val"]
    assert len(val) == 2 and {"boundary_F", "boundary_F_unrefined", "gain", "objects"} <= set(val[0])
    out = tmp_path / "bpr.safetensors"
    assert yaml.safe_load(refine_train("export", "--weights", str(tmp_path / "run" / "final.safetensors"), "--out",
                                       str(out)))["dtype"] == "float16"
    from refine_perception.runtime import open_network

    network = open_network(out)
    assert network(np.zeros((2, 4, 32, 32), np.float32))[0].shape == (2, 1, 32, 32)
