"""`refine-train instances` end to end on a tiny SpatialEmbeddings model: the stick scenes written by the
data generator are read back as training pairs, the loss falls, validation scores the model through the
node's predictor, and the exported fp16 file loads as a model the node can run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from training_checks import refine_train

from refine_perception.data.synthetic.sticks import generate_sticks_dataset, render_sticks
from refine_perception.instances.predict import InstancePredictor
from refine_perception.instances.sticks_truth import scene_truth
from refine_perception.training.config import InstancesTrainConfig, SticksDataConfig, from_dict
from refine_perception.training.instance_data import InstanceTrainingSet, SticksSource
from refine_perception.training.instance_task import InstanceTrainer


@pytest.fixture(scope="module")
def sticks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sticks")
    generate_sticks_dataset(root, 6, seed=21, split="train", workers=1, progress=False, width=96, height=64)
    return root / "train"


def test_disk_and_rendered_sources_agree(sticks: Path) -> None:
    disk = SticksSource(SticksDataConfig(kind="disk", root=str(sticks)))
    rendered = SticksSource(SticksDataConfig(kind="synthetic", seed=21, size=6, image_width=96, image_height=64))
    assert len(disk) == len(rendered) == 6
    for k in (0, 5):
        (image, ids), (same_image, same_ids) = disk[k], rendered[k]
        assert np.array_equal(ids, same_ids) and np.array_equal(image, same_image)
        scene = render_sticks(np.random.SeedSequence([21, k]), 96, 64)
        assert set(np.unique(ids)) - {0} == {k + 1 for k in np.unique(scene.instance_map) if k >= 0}


def test_augmented_ids_stay_ids(sticks: Path) -> None:
    config = from_dict(InstancesTrainConfig, {"augment": {"affine": 1.0, "rotate": 90.0, "flip": 1.0}})
    data = InstanceTrainingSet([SticksDataConfig(kind="disk", root=str(sticks))], (64, 96), config.augment, seed=3)
    image, ids = data[2]
    source_ids = set(np.unique(SticksSource(SticksDataConfig(kind="disk", root=str(sticks)))[2][1]).tolist())
    assert image.shape == (3, 64, 96) and ids.shape == (64, 96)
    assert set(ids.unique().tolist()) <= source_ids  # nearest-neighbour warps never blend two ids


def test_loss_falls_validation_and_export(sticks: Path, tmp_path: Path) -> None:
    tree = {
        "model": {"width": 0.25, "input_height": 64, "input_width": 96},
        "train": [{"kind": "disk", "root": str(sticks)}],
        "val": {"datasets": [{"kind": "disk", "root": str(sticks), "limit": 2}], "every": 24},
        "augment": {"flip": 0.0, "channel_shuffle": 0.0, "brightness": 0.0, "hue_saturation": 0.0, "blur": 0.0,
                    "affine": 0.0},
        "optim": {"epochs": 16, "batch_size": 2, "lr": 3e-3, "ema_decay": 0.0},
        "loss": {"offset_weight": 10.0},
        "run": {"out": str(tmp_path / "run"), "workers": 0, "log_every": 1, "threads": 1},
    }
    trainer = InstanceTrainer(from_dict(InstancesTrainConfig, tree), progress=False)
    final = trainer.fit()
    lines = [json.loads(line) for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in lines if entry["group"] == "train"]
    assert len(losses) == trainer.total_steps == 48
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), f"loss did not fall: {losses[:5]} -> {losses[-5:]}"
    assert [h["step"] for h in trainer.history] == [24, 48] and {"AP", "AP50", "mIoU"} <= set(trainer.history[0])
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    out = tmp_path / "shipped.safetensors"
    assert yaml.safe_load(refine_train("export", "--weights", str(final), "--out", str(out)))["dtype"] == "float16"
    predictor, _ = InstancePredictor.from_file(out)
    assert predictor.input_size == (64, 96)
    results = predictor([render_sticks(np.random.SeedSequence([21, 0]), 192, 128).image])[0]
    assert all(r.mask.shape == (128, 192) for r in results)


def test_discriminative_formulation_through_the_cli(sticks: Path, tmp_path: Path) -> None:
    """`refine-train instances` with model.formulation discriminative: two epochs, an fp16 export the node's
    predictor opens with the margins of training, and the held-out command on it."""
    tree = {
        "model": {"formulation": "discriminative", "width": 0.25, "input_height": 64, "input_width": 96,
                  "embedding_dim": 4, "coordinates": True},
        "train": [{"kind": "disk", "root": str(sticks)}],
        "val": {"datasets": [{"kind": "disk", "root": str(sticks), "limit": 2}]},
        "augment": {"channel_shuffle": 0.0, "brightness": 0.0, "hue_saturation": 0.0, "blur": 0.0, "affine": 0.0},
        "optim": {"epochs": 2, "batch_size": 2, "lr": 3e-3, "ema_decay": 0.0, "amp": False},
        "loss": {"delta_v": 0.4, "delta_d": 1.2},
        "run": {"out": str(tmp_path / "run"), "workers": 0, "log_every": 1, "threads": 1},
    }
    config = tmp_path / "discriminative.yaml"
    config.write_text(yaml.safe_dump(tree))

    assert "weights:" in refine_train("instances", "--config", str(config), "--no-progress")
    lines = [json.loads(line) for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    train = [entry for entry in lines if entry["group"] == "train"]
    assert len(train) == 6 and {"variance", "distance", "regularisation", "semantic"} <= set(train[0])
    assert [entry["step"] for entry in lines if entry["group"] == "val"] == [3, 6]
    out = tmp_path / "shipped.safetensors"
    assert yaml.safe_load(refine_train("export", "--weights", str(tmp_path / "run" / "final.safetensors"),
                                       "--out", str(out)))["dtype"] == "float16"
    predictor, _ = InstancePredictor.from_file(out)
    assert predictor.input_size == (64, 96) and (predictor.decoder.embedding_dim, predictor.decoder.delta_dist) == (4, 1.2)
    assert predictor.metadata["training"]["config"]["model"]["formulation"] == "discriminative"
    results = predictor([render_sticks(np.random.SeedSequence([21, 0]), 192, 128).image])[0]
    assert all(r.mask.shape == (128, 192) for r in results)
    report = json.loads(refine_train("evaluate", "instances", "--weights", str(out), "--num", "2", "--size", "96x64",
                                     "--workers", "1", "--no-progress", "--json"))
    assert report["images"] == 2 and "discriminative" in report["table"] and 0.0 <= report["mIoU"] <= 1.0
    # the crowded scenes are those of the two with at least 8 sticks, scored on their own
    crowded = sum(len(scene_truth(render_sticks(np.random.SeedSequence([2, i]), 96, 64))) >= 8 for i in range(2))
    assert report["crowded"]["scenes"] == crowded and "sticks (" in report["table"]
