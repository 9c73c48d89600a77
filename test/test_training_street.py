"""`refine-train street` end to end on a tiny label refinement network: street scenes written in Cityscapes
layout are read back as the rendered ones, augmentation keeps ids whole, the loss falls at every stage,
validation reports every stage's mIoU, the fp16 export opens on the shared runtime (ONNX graph with all
stage outputs equal to torch), and the held-out command scores it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from training_checks import refine_train

from refine_perception.data.synthetic.street import generate_street_dataset, render_street
from refine_perception.models.lrn.network import STAGE_STRIDES
from refine_perception.runtime import RuntimeConfig
from refine_perception.segmentation.classes import IGNORE_LABEL, STREET_CLASSES
from refine_perception.segmentation.predict import StreetPredictor
from refine_perception.training.config import ConfigError, StreetDataConfig, StreetTrainConfig, from_dict
from refine_perception.training.street_data import StreetSource, StreetTargets, StreetTrainingSet

WIDTH, HEIGHT = 256, 128


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("street")
    generate_street_dataset(root, 6, seed=21, split="train", workers=1, progress=False, width=WIDTH, height=HEIGHT)
    return root


def test_disk_and_rendered_sources_agree(street: Path) -> None:
    disk = StreetSource(StreetDataConfig(kind="cityscapes", root=str(street), split="train"))
    rendered = StreetSource(StreetDataConfig(kind="synthetic", seed=21, size=6, image_width=WIDTH, image_height=HEIGHT))
    assert len(disk) == len(rendered) == 6
    for k in (0, 5):
        (image, ids), (same_image, same_ids) = disk[k], rendered[k]
        assert np.array_equal(ids, same_ids) and np.array_equal(image, same_image)
        assert np.array_equal(ids, render_street(np.random.SeedSequence([21, k]), WIDTH, HEIGHT).instance_ids)
    with pytest.raises(FileNotFoundError, match="no gtFine"):
        StreetSource(StreetDataConfig(kind="cityscapes", root=str(street), split="val"))


def test_augmented_targets_stay_whole(street: Path) -> None:
    config = from_dict(StreetTrainConfig, {"augment": {"affine": 1.0, "rotate": 30.0, "flip": 1.0}})
    targets = StreetTargets(STREET_CLASSES, ("person", "car"))
    source = StreetSource(StreetDataConfig(kind="cityscapes", root=str(street)))
    data = StreetTrainingSet([StreetDataConfig(kind="cityscapes", root=str(street))], (64, 128), targets,
                             config.augment, seed=3)
    image, labels, instances = data[2]
    assert image.shape == (3, 64, 128) and labels.shape == instances.shape == (64, 128)
    source_ids = set(np.unique(source[2][1]).tolist())
    assert set(instances.unique().tolist()) <= source_ids | {0}  # nearest warps never blend two ids
    assert set(labels.unique().tolist()) <= set(range(len(STREET_CLASSES))) | {IGNORE_LABEL}
    assert int((labels == IGNORE_LABEL).sum()) > 0  # the rotation brings in void corners
    things = instances > 0
    assert bool(things.any()) and set((instances[things] // 1000).unique().tolist()) <= {24, 26}


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="multiples of 32"):
        from_dict(StreetTrainConfig, {"model": {"input_height": 240}})
    with pytest.raises(ConfigError, match="unknown class names"):
        from_dict(StreetTrainConfig, {"model": {"classes": ["road", "pavement"]}})
    with pytest.raises(ConfigError, match="instance_classes"):
        from_dict(StreetTrainConfig, {"model": {"classes": ["road", "car"], "instance_classes": ["person"]}})
    with pytest.raises(ConfigError, match="stage_weights"):
        from_dict(StreetTrainConfig, {"loss": {"stage_weights": [1.0, 1.0]}})
    with pytest.raises(ConfigError, match="needs a root"):
        from_dict(StreetTrainConfig, {"train": [{"kind": "cityscapes"}]})


def test_training_export_runtime_and_heldout(street: Path, tmp_path: Path) -> None:
    tree = {
        "model": {"width": 0.125, "decoder_channels": 8, "embedding_channels": 8, "embedding_dim": 4,
                  "input_height": 64, "input_width": 128},
        "train": [{"kind": "cityscapes", "root": str(street)}],
        "val": {"datasets": [{"kind": "cityscapes", "root": str(street), "limit": 2}], "every": 15},
        "augment": {"channel_shuffle": 0.0, "brightness": 0.0, "hue_saturation": 0.0, "blur": 0.0, "affine": 0.0},
        "optim": {"epochs": 10, "batch_size": 2, "lr": 3e-3, "ema_decay": 0.0, "amp": False},
        "run": {"out": str(tmp_path / "run"), "workers": 0, "log_every": 1, "threads": 1},
    }
    config = tmp_path / "street.yaml"
    config.write_text(yaml.safe_dump(tree))
    assert "weights:" in refine_train("street", "--config", str(config), "--no-progress")
    lines = [json.loads(line) for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    train = [entry for entry in lines if entry["group"] == "train"]
    assert len(train) == 30 and {f"ce_s{s}" for s in STAGE_STRIDES} | {"variance", "distance"} <= set(train[0])
    for stride in STAGE_STRIDES:
        first, last = (np.mean([entry[f"ce_s{stride}"] for entry in part]) for part in (train[:5], train[-5:]))
        assert last < 0.9 * first, f"stage 1/{stride}: cross-entropy {first:.3f} -> {last:.3f}"
    val = [entry for entry in lines if entry["group"] == "val"]
    assert [entry["step"] for entry in val] == [15, 30]
    assert {f"mIoU_s{s}" for s in STAGE_STRIDES} <= set(val[-1]) and val[-1]["mIoU"] == val[-1]["mIoU_s2"]

    out = tmp_path / "shipped.safetensors"
    assert yaml.safe_load(refine_train("export", "--weights", str(tmp_path / "run" / "final.safetensors"),
                                       "--out", str(out)))["dtype"] == "float16"
    image = render_street(np.random.SeedSequence([2, 0]), WIDTH, HEIGHT).image
    eager, _ = StreetPredictor.from_file(out)
    onnx, info = StreetPredictor.from_file(out, RuntimeConfig("onnxruntime", "cpu", "fp32"))
    assert info.name == "onnxruntime"
    batch = np.random.default_rng(0).random((1, 3, 64, 128), dtype=np.float32)
    for a, b in zip(eager.run(batch), onnx.run(batch)):
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-3)
    assert len(eager([image])[0].stage_labels) == len(STAGE_STRIDES)
    int8, _ = StreetPredictor.from_file(out, RuntimeConfig("onnxruntime", "cpu", "int8"))
    assert int8([image])[0].stage_labels[-1].shape == (HEIGHT, WIDTH)

    report = json.loads(refine_train("evaluate", "street", "--weights", str(out), "--num", "2", "--size",
                                     f"{WIDTH}x{HEIGHT}", "--workers", "1", "--no-progress", "--json"))
    assert report["images"] == 2 and [s["stride"] for s in report["stages"]] == list(STAGE_STRIDES)
    assert all(0.0 <= s["mIoU"] <= 1.0 and 0.0 <= s["boundary_F"] <= 1.0 for s in report["stages"])
    assert set(report["coco_mask_ap"]["per_class"]) <= {"person", "car"} and "1/32" in report["table"]
