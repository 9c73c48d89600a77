"""Training configuration: the shipped YAML files load, defaults survive a round trip, every kind of
mistake (unknown key, wrong type, bad override, missing root) is a ConfigError naming where it is, and a
recipe's stages resolve to the runs that made the shipped lane weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from refine_perception.training.config import (
    AugmentConfig,
    BPRTrainConfig,
    ConfigError,
    DatasetConfig,
    InstancesTrainConfig,
    LanesTrainConfig,
    StreetTrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    load_stages,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config" / "training"
YAML_FILES = sorted(CONFIG_DIR.glob("*.yaml"))
RECIPE = CONFIG_DIR / "lanes_r18_synthetic.yaml"


def build(tree: dict[str, Any]) -> LanesTrainConfig:
    return from_dict(LanesTrainConfig, tree)


def test_config_directory_is_not_empty() -> None:
    assert len(YAML_FILES) >= 2


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_shipped_yaml_loads_and_round_trips(path: Path) -> None:
    kinds = {"instances": InstancesTrainConfig, "street": StreetTrainConfig, "bpr": BPRTrainConfig}
    kind = kinds.get(path.name.split("_")[0], LanesTrainConfig)
    for _, config in load_stages(path, kind=kind):  # a plain file is one unnamed stage
        assert isinstance(config, kind)
        assert from_dict(kind, yaml.safe_load(yaml.safe_dump(to_dict(config)))) == config


def test_a_section_keeps_its_parents_defaults() -> None:
    """A section given in part starts from the default its parent config declares, not from the section's own
    class defaults: BPR's augment default turns every photometric change off, so `augment: {flip: 0.5}` is valid."""
    config = from_dict(BPRTrainConfig, {"train": {"segmenter": "m.safetensors", "sticks": [{"kind": "synthetic"}]},
                                        "augment": {"flip": 0.5}, "run": {"seed": 3}})
    assert config.augment == AugmentConfig(flip=0.5, channel_shuffle=0.0, brightness=0.0, hue_saturation=0.0, blur=0.0,
                                           affine=0.0)
    assert config.run.out == "runs/bpr" and config.run.seed == 3
    with pytest.raises(ConfigError, match="only flip applies"):
        from_dict(BPRTrainConfig, {"train": {"segmenter": "m", "sticks": [{}]}, "augment": {"blur": 0.2}})


def test_instance_config_checks() -> None:
    config = load_config(None, ["model.width=0.5"], InstancesTrainConfig)
    assert config.model.width == 0.5 and config.train[0].kind == "synthetic"
    for override, message in (("model.input_height=100", "multiples of 8"), ("model.n_sigma=3", "n_sigma"),
                              ("optim.epochs=0", "optim.epochs")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override], InstancesTrainConfig)
    with pytest.raises(ConfigError, match="disk sticks dataset needs a root"):
        from_dict(InstancesTrainConfig, {"train": [{"kind": "disk"}]})


def test_discriminative_config_and_its_checks() -> None:
    """The shipped discriminative recipe selects its formulation; its keys are checked, and a key of the
    other formulation set in a config fails instead of being ignored."""
    (scratch, config), (again, second) = load_stages(CONFIG_DIR / "instances_sticks_discriminative_cpu.yaml",
                                                     kind=InstancesTrainConfig)
    assert (scratch, again) == ("scratch", "again") and not config.model.init
    assert second.model.init == str(Path(config.run.out) / "final.safetensors") and second.optim.lr < config.optim.lr
    assert config.model.formulation == "discriminative" and config.model.embedding_dim == 8
    assert (config.model.width, config.model.input_height, config.model.input_width) == (0.5, 240, 320)
    assert (config.loss.delta_v, config.loss.delta_d, config.loss.gamma) == (0.5, 1.5, 0.001)
    assert load_config(None, ["model.formulation=discriminative", "model.coordinates=true"],
                       InstancesTrainConfig).model.coordinates
    discriminative = "model.formulation=discriminative"
    for overrides, message in (
        (["model.formulation=kmeans"], "not one of"),
        ([discriminative, "model.embedding_dim=0"], "embedding_dim must be at least 1"),
        ([discriminative, "loss.delta_v=1.5"], "delta_v < delta_d"),
        ([discriminative, "loss.gamma=-1"], "weights must be >= 0"),
        ([discriminative, "model.coordinates=1"], "expected true or false"),
        ([discriminative, "model.n_sigma=1"], "model.n_sigma is set .* for the spatial_embeddings formulation"),
        ([discriminative, "loss.offset_weight=10"], "loss.offset_weight is set"),
        (["model.embedding_dim=16"], "model.embedding_dim is set .* for the discriminative formulation"),
        (["loss.semantic_weight=2"], "loss.semantic_weight is set"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_config(None, overrides, InstancesTrainConfig)


def test_recipe_first_stage_values() -> None:
    config = load_config(RECIPE, stage="scratch")
    assert (config.model.input_height, config.model.input_width) == (160, 400)
    assert [d.kind for d in config.train] == ["culane", "tusimple"]
    assert config.train[1].label_files == ("label_data_train.json",)
    assert config.augment.scale == (0.9, 1.1) and isinstance(config.augment.scale, tuple)
    assert config.augment.flip == 0.5  # not in the file: the default
    assert config.optim.lr == pytest.approx(1e-3) and config.model.init == ""


def test_recipe_stages_chain_to_the_shipped_weights() -> None:
    """Each stage starts from the one before; the last is the config the shipped model's json records, and
    the json names the recipe's stages for its runs, in order."""
    stages = load_stages(RECIPE)
    names = [name for name, _ in stages]
    assert names == ["scratch", "again", "hard", "lanepool", "input560", "polish", "laneiou", "bf16"]
    for (_, before), (_, after) in zip(stages, stages[1:]):
        assert after.model.init == f"{before.run.out}/final.safetensors"
    shipped = json.loads((ROOT / "models" / "clrnet_r18_synthetic.json").read_text())
    assert from_dict(LanesTrainConfig, shipped["training"]["config"]) == stages[-1][1]
    cost = shipped["training_cost"]
    assert (cost["config"], cost["stage"]) == ("config/training/lanes_r18_synthetic.yaml", "bf16")
    assert [run["command"].split("--stage ")[1] for run in cost["runs"]] == names
    assert sum(run["steps"] for run in cost["runs"]) == cost["steps"]
    # what each stage changes (the rest carries over from the stage before)
    again, hard, input560, bf16 = (dict(stages)[name] for name in ("again", "hard", "input560", "bf16"))
    assert (again.optim.epochs, again.optim.lr, again.val.every, again.train) == (2, 5e-4, 625, stages[0][1].train)
    assert [(d.kind, d.limit, d.seed, d.category) for d in hard.train] == [
        ("culane", 4000, 0, ""), ("tusimple", 2000, 0, ""), ("synthetic", 0, 11, "curve"), ("synthetic", 0, 12, "noline")]
    assert (input560.model.input_height, input560.model.pooling, input560.run.checkpoint_every) == (224, "lane", 100)
    assert (bf16.optim.amp, bf16.loss.iou, bf16.run.threads, bf16.train[0].limit) == (True, "lane", 0, 0)


def write_recipe(tmp_path: Path, stages: Any, **top: Any) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"run": {"out": "runs/a"}, **top, "stages": stages}))
    return path


def test_recipe_overrides_apply_to_every_stage(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, [{"name": "one"}, {"name": "two", "optim": {"lr": 0.5}, "run": {"out": "runs/b"}}],
                        optim={"epochs": 2, "lr": 0.1})
    overrides = ["optim.epochs=4", "model.init=start.safetensors"]
    (_, one), (_, two) = load_stages(path, overrides)
    assert (one.optim.epochs, one.optim.lr, one.model.init) == (4, 0.1, "start.safetensors")
    assert (two.optim.epochs, two.optim.lr, two.model.init) == (4, 0.5, "runs/a/final.safetensors")
    assert load_config(path, overrides, stage="two") == two
    with pytest.raises(ConfigError, match="is a recipe of stages one, two: name one"):
        load_config(path)
    with pytest.raises(ConfigError, match="no stage 'three'; it has one, two"):
        load_config(path, stage="three")
    plain = tmp_path / "plain.yaml"
    plain.write_text("optim:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="no stage 'one' \\(the file has no stages\\)"):
        load_config(plain, stage="one")


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "stages: expected a list of stages"),
        ({"name": "one"}, "stages: expected a list of stages"),
        ([{"optim": {"lr": 0.1}}], r"stages\[0\]: expected a mapping with a name"),
        (["one"], r"stages\[0\]: expected a mapping with a name"),
        ([{"name": "one"}, {"name": "one", "run": {"out": "runs/b"}}], "stage one: the name is taken"),
        ([{"name": "one"}, {"name": "two", "model": {"init": "x.safetensors"}, "run": {"out": "runs/b"}}],
         "stage two: model.init is the previous stage's final.safetensors"),
        ([{"name": "one"}, {"name": "two"}], "stage two: run.out runs/a is stage one's too"),
        ([{"name": "one"}, {"name": "two", "optim": {"lr": "fast"}, "run": {"out": "runs/b"}}],
         "stage two: optim.lr: expected a number"),
        ([{"name": "one", "optim": {"lrr": 1}}], r"stage one: optim: unknown key\(s\) \['lrr'\]"),
    ],
)
def test_bad_recipes_name_the_stage(tmp_path: Path, stages: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_stages(write_recipe(tmp_path, stages))


def test_backbone_weights_and_curvelanes_entries() -> None:
    config = build({"model": {"backbone_weights": "resnet18.pth"},
                    "train": [{"kind": "curvelanes", "root": "data/CurveLanes", "split": "valid", "cut_height": 0}]})
    assert config.model.backbone_weights == "resnet18.pth" and config.train[0].split == "valid"
    with pytest.raises(ConfigError, match="model.init and model.backbone_weights: set one"):
        build({"model": {"backbone_weights": "resnet18.pth", "init": "lanes.safetensors"}})
    with pytest.raises(ConfigError, match="a curvelanes dataset needs a root"):
        build({"train": [{"kind": "curvelanes"}]})


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
