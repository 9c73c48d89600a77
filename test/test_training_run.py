"""End-to-end runs of `refine-train lanes` on a tiny model: the loss falls, a run killed mid-epoch resumes
to the same weights, and two CPU processes train under torchrun (gloo)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from refine_perception.data.synthetic.road_dataset import generate_lane_dataset
from refine_perception.models.clrnet.weights import load_lane_model
from refine_perception.training.config import LanesTrainConfig, from_dict
from refine_perception.training.lane_task import LaneTrainer
from refine_perception.training.trainer import _epoch_batches

NO_AUGMENT = {"flip": 0.0, "channel_shuffle": 0.0, "brightness": 0.0, "hue_saturation": 0.0, "blur": 0.0,
              "affine": 0.0}


@pytest.fixture(scope="module")
def road(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("road")
    generate_lane_dataset(root, 8, seed=21, split="train", workers=1, formats=("culane",), progress=False)
    return root / "culane"


def tiny_config(road: Path, out: Path, **sections: dict) -> dict:
    tree: dict = {
        "model": {"backbone": "resnet18", "input_height": 64, "input_width": 160},
        "train": [{"kind": "culane", "root": str(road), "list_file": "list/train_gt.txt"}],
        "optim": {"epochs": 3, "batch_size": 2, "lr": 1e-3, "ema_decay": 0.99, "grad_clip": 5.0},
        "run": {"out": str(out), "workers": 0, "log_every": 1, "checkpoint_every": 100, "threads": 1},
    }
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    return tree


def write_config(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree))
    return path


def train_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "refine_perception.training", "lanes", "--no-progress", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def read_scalars(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "scalars.jsonl").read_text().splitlines()]


def test_loss_falls_and_run_files(road: Path, tmp_path: Path) -> None:
    tree = tiny_config(road, tmp_path / "run", augment=NO_AUGMENT, optim={"epochs": 6, "lr": 2e-3},
                       val={"datasets": [{"kind": "culane", "root": str(road), "list_file": "list/train.txt"}],
                            "every": 12, "batch_size": 4})
    trainer = LaneTrainer(from_dict(LanesTrainConfig, tree), progress=False)
    final = trainer.fit()
    losses = [entry["loss"] for entry in read_scalars(tmp_path / "run") if entry["group"] == "train"]
    assert len(losses) == trainer.total_steps == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.7 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"
    # validation ran twice, drew the curves, and kept the best weights; the final weights load back
    assert [h["step"] for h in trainer.history] == [12, 24]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    model, meta = load_lane_model(final)
    assert model.input_size == (64, 160) and meta["training"]["step"] == 24
    load_lane_model(tmp_path / "run" / "best.safetensors")


def test_refuses_to_overwrite_a_run(road: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(road, tmp_path / "run", optim={"epochs": 1}))
    first = train_cli("--config", str(config))
    assert first.wait(timeout=300) == 0, first.stdout.read()
    again = train_cli("--config", str(config))
    assert again.wait(timeout=300) == 2
    assert "--resume" in again.stdout.read()


def _final_state(out: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(out / "final.safetensors"))


def test_killed_mid_epoch_resumes_to_identical_weights(road: Path, tmp_path: Path) -> None:
    # 8 images / batch 2 = 4 steps per epoch; checkpoints at steps 3, 6, 9 fall inside epochs
    overrides = {"run": {"checkpoint_every": 3, "workers": 1}, "optim": {"epochs": 3}}
    whole = write_config(tmp_path / "whole.yaml", tiny_config(road, tmp_path / "whole", **overrides))
    broken = write_config(tmp_path / "broken.yaml", tiny_config(road, tmp_path / "broken", **overrides))
    assert train_cli("--config", str(whole)).wait(timeout=300) == 0

    process = train_cli("--config", str(broken))
    latest = tmp_path / "broken" / "checkpoints" / "latest"
    deadline = time.monotonic() + 300
    while not (latest.is_file() and latest.read_text().strip() >= "iter_00000006"):
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (tmp_path / "broken" / "final.safetensors").exists()
    resumed_from = int(latest.read_text().strip().removeprefix("iter_"))
    assert resumed_from % 4 != 0  # mid-epoch

    resumed = train_cli("--config", str(broken), "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resumed {tmp_path / 'broken'} at step {resumed_from}" in output
    expected, actual = _final_state(tmp_path / "whole"), _final_state(tmp_path / "broken")
    assert expected.keys() == actual.keys()
    different = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    steps = [e["step"] for e in read_scalars(tmp_path / "broken") if e["group"] == "train"]
    assert steps == list(range(1, 13))  # the steps redone after the kill are logged once


def test_epoch_batches_split_data_between_ranks() -> None:
    ranks = [_epoch_batches(23, 3, 2, rank, seed=4, epoch=1) for rank in range(2)]
    assert all(len(batches) == 23 // 6 for batches in ranks)
    seen = [i for batches in ranks for batch in batches for i in batch]
    assert len(seen) == len(set(seen)) == 18
    assert _epoch_batches(23, 3, 2, 0, seed=4, epoch=1) == ranks[0]
    assert _epoch_batches(23, 3, 2, 0, seed=4, epoch=2) != ranks[0]


@pytest.mark.slow
def test_ddp_two_cpu_processes(road: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "ddp.yaml", tiny_config(road, tmp_path / "ddp", optim={"epochs": 2}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "refine_perception.training", "lanes", "--no-progress", "--config", str(config)]
    run = subprocess.run(torchrun, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    state = json.loads((tmp_path / "ddp" / "checkpoints" / "iter_00000004" / "state.json").read_text())
    assert state["world"] == 2 and state["total_steps"] == 4  # 8 images / (2 per process x 2) x 2 epochs
    model, meta = load_lane_model(tmp_path / "ddp" / "final.safetensors")
    assert meta["training"]["processes"] == 2
    # a single process cannot continue a two-process run: the schedule would differ
    single = train_cli("--config", str(config), "--resume")
    output, _ = single.communicate(timeout=300)
    assert single.returncode == 2 and "processes" in output


def test_heldout_command_prints_every_protocol(tmp_path: Path) -> None:
    from refine_perception.models.clrnet.model import CLRNet
    from refine_perception.models.clrnet.weights import save_lane_model

    torch.manual_seed(0)
    weights = tmp_path / "m.safetensors"
    save_lane_model(weights, CLRNet("resnet18", 5, (64, 160)).eval(), "resnet18", {"cut_height": 270})
    run = subprocess.run([sys.executable, "-m", "refine_perception.training", "evaluate", "lanes", "--weights",
                          str(weights), "--num", "3", "--seed", "2", "--workers", "1", "--no-progress", "--json",
                          "--out", str(tmp_path / "report.json")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert report["images"] == 3 and report["culane"]["categories"]["all"]["images"] == 3
    assert report["tusimple"]["images"] + report["tusimple_laneless"]["images"] == 3
    assert {"F1@50", "F1@75"} <= set(report["table"].replace("\n", " ").split())
    assert "lane type accuracy" in report["table"]


def test_init_weights_may_change_the_pooling_and_input_size_but_not_the_tensors(road: Path, tmp_path: Path) -> None:
    from refine_perception.models.clrnet.model import CLRNet
    from refine_perception.models.clrnet.weights import ModelFileError, save_lane_model
    from refine_perception.training.lane_task import LaneTask

    torch.manual_seed(0)
    start = CLRNet("resnet18", 5, (64, 160)).eval()
    save_lane_model(tmp_path / "start.safetensors", start, "resnet18", {"cut_height": 270})
    tree = tiny_config(road, tmp_path / "out", model={"init": str(tmp_path / "start.safetensors"), "pooling": "lane",
                                                      "input_height": 96, "input_width": 240})
    model = LaneTask(from_dict(LanesTrainConfig, tree)).build_model()
    assert model.head.pooling == "lane" and model.input_size == (96, 240)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values()))
    tree["model"]["num_priors"] = 96
    with pytest.raises(ModelFileError, match="architecture"):
        LaneTask(from_dict(LanesTrainConfig, tree)).build_model()


@pytest.mark.parametrize("amp", [False, True])
def test_amp_runs_convolutions_in_bfloat16_where_the_cpu_has_it(road: Path, tmp_path: Path, amp: bool) -> None:
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    if amp and not native:
        pytest.skip("this CPU emulates bfloat16, so amp stays off on it")
    tree = tiny_config(road, tmp_path / "run", augment=NO_AUGMENT, optim={"amp": amp})
    trainer = LaneTrainer(from_dict(LanesTrainConfig, tree), progress=False)
    seen: list[torch.dtype] = []
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    images, targets = next(trainer._batches(0, 0))
    scalars = trainer._train_step(images, targets)
    assert seen == [torch.bfloat16 if amp else torch.float32]
    assert scalars is not None and all(map(math.isfinite, scalars.values()))
    assert conv.weight.dtype == torch.float32 and conv.weight.is_contiguous(memory_format=torch.channels_last)


def synthetic_config(out: Path, train: list | None = None, **sections: dict) -> dict:
    """A two-image run on rendered scenes (or on `train`): enough to build the trainer and take a step."""
    return {**tiny_config(Path(), out, **sections), "train": train or [{"kind": "synthetic", "seed": 5, "size": 2}]}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_imagenet_backbone_weights_from_the_config(tmp_path: Path, suffix: str) -> None:
    """model.backbone_weights loads an ImageNet checkpoint (classifier included, as released) into the
    backbone of a fresh run; the rest of the network keeps its random start."""
    from refine_perception.models.backbones import build_backbone

    torch.manual_seed(1)
    imagenet = build_backbone("resnet18")
    state = {k: v + 0.25 for k, v in imagenet.state_dict().items() if not k.endswith("num_batches_tracked")}
    state |= {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": state, "epoch": 90}, path)  # read back with weights_only=True
    else:
        safetensors.torch.save_file(state, str(path))
    trainer = LaneTrainer(from_dict(LanesTrainConfig, synthetic_config(tmp_path / "run", model={"backbone_weights": str(path)})),
                          progress=False)
    loaded = trainer.model.backbone.state_dict()
    assert all(torch.equal(loaded[k].cpu(), v) for k, v in state.items() if not k.startswith("fc."))
    assert trainer._train_step(*next(trainer._batches(0, 0))) is not None


def test_unreadable_backbone_weights_stop_refine_train_with_a_message(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from refine_perception.training.cli import main

    bad = tmp_path / "resnet18.pth"
    bad.write_bytes(b"not a checkpoint")
    config = write_config(tmp_path / "c.yaml", synthetic_config(tmp_path / "run", model={"backbone_weights": str(bad)}))
    assert main(["lanes", "--no-progress", "--config", str(config)]) == 2
    assert f"refine-train: error: {bad}: cannot read checkpoint" in capsys.readouterr().err


def write_curvelanes(root: Path, split: str, count: int) -> None:
    """A CurveLanes-layout split of `count` 320x180 images, each with two painted lanes and their labels."""
    import cv2
    import numpy as np

    from refine_perception.data.formats.curvelanes import write_curvelanes_json

    names = []
    for index in range(count):
        image = np.full((180, 320, 3), 60, np.uint8)
        lanes = [np.array([[60.0 + 10 * index, 179.0], [140.0, 40.0]]), np.array([[260.0, 179.0], [180.0, 40.0]])]
        for lane in lanes:
            cv2.line(image, tuple(int(v) for v in lane[0]), tuple(int(v) for v in lane[1]), (255, 255, 255), 3)
        name = f"images/{split}{index}.jpg"
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / split / name), image)
        write_curvelanes_json(root / split / "labels" / f"{split}{index}.lines.json", lanes)
        names.append(name)
    (root / split / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))


def test_curvelanes_dataset_from_the_config(tmp_path: Path) -> None:
    """A CurveLanes copy trains and validates through `train`/`val` entries of kind curvelanes."""
    root = tmp_path / "CurveLanes"
    write_curvelanes(root, "train", 4)
    write_curvelanes(root, "valid", 2)
    entry = {"kind": "curvelanes", "root": str(root), "cut_height": 0}
    tree = synthetic_config(tmp_path / "run", train=[{**entry, "split": "train"}], augment=NO_AUGMENT,
                            optim={"epochs": 1}, val={"datasets": [{**entry, "split": "valid"}], "batch_size": 2})
    trainer = LaneTrainer(from_dict(LanesTrainConfig, tree), progress=False)
    record, cut_height = trainer.data.record(1)
    assert record.image.shape == (180, 320, 3) and cut_height == 0
    assert [lane[0].tolist() for lane in record.lanes] == [[70.0, 179.0], [260.0, 179.0]]
    _, targets = trainer.data[1]
    assert len(targets.types) == 2  # both lanes reach the network's label space
    final = trainer.fit()
    assert [h["step"] for h in trainer.history] == [2] and "F1@50" in trainer.history[0]
    assert load_lane_model(final)[1]["training"]["config"]["train"][0]["kind"] == "curvelanes"


def test_recipe_stages_train_in_order_each_from_the_last(tmp_path: Path) -> None:
    from refine_perception.training.cli import main

    tree = synthetic_config(tmp_path / "first", augment=NO_AUGMENT, optim={"epochs": 1})
    tree["stages"] = [{"name": "first"}, {"name": "second", "optim": {"lr": 1e-4}, "run": {"out": str(tmp_path / "second")}}]
    recipe = write_config(tmp_path / "recipe.yaml", tree)
    assert main(["lanes", "--no-progress", "--config", str(recipe)]) == 0
    second = load_lane_model(tmp_path / "second" / "final.safetensors")[1]["training"]["config"]
    assert second["model"]["init"] == str(tmp_path / "first" / "final.safetensors") and second["optim"]["lr"] == 1e-4
    assert main(["lanes", "--no-progress", "--config", str(recipe)]) == 2  # the runs are there: --resume or another out
    assert main(["lanes", "--no-progress", "--config", str(recipe), "--resume"]) == 0  # both already finished
    assert main(["lanes", "--no-progress", "--config", str(recipe), "--stage", "third"]) == 2
