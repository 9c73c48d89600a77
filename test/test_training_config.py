"""Training configuration: the shipped YAML files load, defaults survive a round trip, and every kind of
mistake (unknown key, wrong type, bad override, missing root) is a ConfigError naming where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from refine_perception.training.config import (
    AugmentConfig,
    ConfigError,
    DatasetConfig,
    InstancesTrainConfig,
    LanesTrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    to_dict,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "training"
YAML_FILES = sorted(CONFIG_DIR.glob("*.yaml"))


def build(tree: dict[str, Any]) -> LanesTrainConfig:
    return from_dict(LanesTrainConfig, tree)


def test_config_directory_is_not_empty() -> None:
    assert len(YAML_FILES) >= 2


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_shipped_yaml_loads_and_round_trips(path: Path) -> None:
    kind = InstancesTrainConfig if path.name.startswith("instances") else LanesTrainConfig
    config = load_config(path, kind=kind)
    assert isinstance(config, kind)
    assert from_dict(kind, yaml.safe_load(yaml.safe_dump(to_dict(config)))) == config


def test_instance_config_checks() -> None:
    config = load_config(None, ["model.width=0.5"], InstancesTrainConfig)
    assert config.model.width == 0.5 and config.train[0].kind == "synthetic"
    for override, message in (("model.input_height=100", "multiples of 8"), ("model.n_sigma=3", "n_sigma"),
                              ("optim.epochs=0", "optim.epochs")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override], InstancesTrainConfig)
    with pytest.raises(ConfigError, match="disk sticks dataset needs a root"):
        from_dict(InstancesTrainConfig, {"train": [{"kind": "disk"}]})


def test_synthetic_cpu_yaml_values() -> None:
    config = load_config(CONFIG_DIR / "lanes_r18_synthetic_cpu.yaml")
    assert (config.model.input_height, config.model.input_width) == (160, 400)
    assert [d.kind for d in config.train] == ["culane", "tusimple"]
    assert config.train[1].label_files == ("label_data_train.json",)
    assert config.augment.scale == (0.9, 1.1) and isinstance(config.augment.scale, tuple)
    assert config.augment.flip == 0.5  # not in the file: the default
    assert config.optim.lr == pytest.approx(1e-3)


def test_defaults_round_trip() -> None:
    defaults = LanesTrainConfig()
    tree = to_dict(defaults)
    assert tree["augment"]["scale"] == [0.8, 1.2]  # tuples become lists
    assert isinstance(tree["train"], list) and tree["train"][0]["kind"] == "synthetic"
    assert build(tree) == defaults
    assert load_config(None) == defaults
    assert build({}) == defaults


def test_int_accepted_for_float() -> None:
    config = build({"optim": {"lr": 1, "grad_clip": 5}})
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"optim": {"lrr": 0.1}}, "optim: unknown key(s) ['lrr']"),
        ({"optimizer": {}}, "config: unknown key(s) ['optimizer']"),
        ({"train": [{"kind": "synthetic", "sed": 1}]}, "train[0]: unknown key(s) ['sed']"),
        ({"optim": {"epochs": "10"}}, "optim.epochs: expected an integer"),
        ({"optim": {"epochs": True}}, "optim.epochs: expected an integer"),
        ({"optim": {"epochs": 2.0}}, "optim.epochs: expected an integer"),
        ({"optim": {"lr": "fast"}}, "optim.lr: expected a number"),
        ({"optim": {"lr": False}}, "optim.lr: expected a number"),
        ({"optim": {"amp": 1}}, "optim.amp: expected true or false"),
        ({"run": {"out": 3}}, "run.out: expected a string"),
        ({"model": {"backbone": "resnet50"}}, "model.backbone: 'resnet50' is not one of"),
        ({"train": [{}, {"kind": "kitti"}]}, "train[1].kind: 'kitti' is not one of"),
        ({"augment": {"scale": [0.8, 1.0, 1.2]}}, "augment.scale: expected 2 values, got 3"),
        ({"augment": {"scale": 0.8}}, "augment.scale: expected a list"),
        ({"augment": {"brightness_mul": [1.0, "x"]}}, "augment.brightness_mul[1]: expected a number"),
        ({"train": [{"label_files": "a.json"}]}, "train[0].label_files: expected a list"),
        ({"val": {"datasets": [{"kind": "synthetic", "size": "5"}]}}, "val.datasets[0].size: expected an integer"),
        ({"optim": 3}, "optim: expected a mapping, got int"),
        ({"train": []}, "train: at least one dataset"),
        ({"train": [{"kind": "culane"}]}, "a culane dataset needs a root"),
        ({"val": {"datasets": [{"kind": "tusimple"}]}}, "a tusimple dataset needs a root"),
        ({"optim": {"epochs": 0}}, "optim.epochs must be at least 1, got 0"),
        ({"optim": {"lr": 0}}, "optim.lr must be > 0"),
        ({"train": [{"kind": "synthetic", "category": "curvy"}]}, "category 'curvy': only synthetic datasets"),
        ({"train": [{"kind": "culane", "root": "r", "category": "curve"}]}, "category 'curve': only synthetic"),
    ],
)
def test_bad_trees_name_the_offending_entry(tree: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(tree)
    assert message in str(info.value)


def test_culane_dataset_with_root_is_accepted() -> None:
    config = build({"train": [{"kind": "culane", "root": "data/CULane"}]})
    assert config.train == (DatasetConfig(kind="culane", root="data/CULane"),)


def test_overrides_nested_and_yaml_typed() -> None:
    tree = apply_overrides(
        {"optim": {"lr": 0.1}},
        ["optim.lr=3.0e-4", "optim.amp=false", "run.out=runs/x", "augment.scale=[0.5, 2]", "model.input_height=160"],
    )
    assert tree["optim"] == {"lr": 3e-4, "amp": False}
    assert tree["run"] == {"out": "runs/x"}  # a section missing from the tree is created
    config = build(tree)
    assert config.augment == AugmentConfig(scale=(0.5, 2.0))
    assert config.model.input_height == 160 and config.optim.lr == pytest.approx(3e-4)


def test_load_config_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  epochs: 3\nrun:\n  out: runs/a\n")
    config = load_config(path, ["optim.epochs=5", "run.seed=7"])
    assert config.optim.epochs == 5 and config.run.seed == 7 and config.run.out == "runs/a"
    with pytest.raises(ConfigError, match=r"optim\.epochs: expected an integer, got 'five'"):
        load_config(path, ["optim.epochs=five"])
    with pytest.raises(ConfigError, match="optim.epochs must be at least 1"):
        load_config(path, ["optim.epochs=0"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr", "is not of the form section.key=value"),
        ("=3", "is not of the form section.key=value"),
        ("optim.lr.x=3", "lr is not a section"),
    ],
)
def test_malformed_overrides(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides({"optim": {"lr": 0.1}}, [override])


def test_override_in_exponent_form_without_dot() -> None:
    assert load_config(None, ["optim.lr=3e-4"]).optim.lr == pytest.approx(3e-4)


def test_override_value_that_is_not_yaml() -> None:
    with pytest.raises(ConfigError, match="run.out"):
        apply_overrides({}, ["run.out=[unclosed"])


def test_unknown_keys_of_mixed_types() -> None:
    with pytest.raises(ConfigError, match="optim: unknown key"):
        build({"optim": {1: 2, "foo": 3}})


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listed)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty.yaml"):
        load_config(empty)  # an empty file is a mistake, not a request for the defaults (issue 17)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("# lr: 3e-4\n\n", "is empty"),
        ("~\n", "is empty"),
        ("0\n", "top level must be a mapping, got int"),
        ("false\n", "top level must be a mapping, got bool"),
        ("''\n", "top level must be a mapping, got str"),
        ("just words\n", "top level must be a mapping, got str"),
    ],
)
def test_config_file_without_settings_is_an_error_naming_it(tmp_path: Path, text: str, message: str) -> None:
    # `yaml.safe_load(...) or {}` used to turn every one of these into a full default training run.
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{path}: .*{message}"):
        load_config(path)
    with pytest.raises(ConfigError, match=f"{path}: .*{message}"):
        load_config(path, ["optim.epochs=1"], InstancesTrainConfig)


def test_refine_train_with_an_empty_config_fails_before_training(tmp_path: Path) -> None:
    import subprocess
    import sys

    empty = tmp_path / "empty.yaml"
    empty.write_text("\n")
    run = subprocess.run(
        [str(Path(sys.prefix) / "lib" / "refine_perception" / "refine-train"), "lanes", "--config", str(empty),
         "--set", f"run.out={tmp_path / 'run'}", "--set", "run.workers=0", "--no-progress"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"refine-train: error: {empty}: " in run.stderr and "is empty" in run.stderr
    assert not (tmp_path / "run").exists()
