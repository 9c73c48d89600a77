"""Launch files and params files, checked statically (ROS 2's launch system is not installable here),
plus the in-process stand-in resolving the same graphs. Where launch_ros is importable, the launch
description itself is built too."""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from refine_perception.cli.params import params_files
from refine_perception.core.settings import FromParams
from refine_perception.graphs import GRAPHS, GraphError, plan
from refine_perception.instances.pipeline import InstanceSettings
from refine_perception.lanes.pipeline import PipelineSettings
from refine_perception.ros.executables import NODE_CLASSES
from refine_perception.ros.graph_runner import node_class
from refine_perception.segmentation.pipeline import StreetSettings

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def node_parameters(params_file: str | Path, node_name: str) -> dict[str, Any]:
    """The parameters a ROS params file gives a node: `/**` entries, then entries keyed by its name."""
    with open(params_file) as stream:
        doc = yaml.safe_load(stream) or {}
    values: dict[str, Any] = {}
    for key in ("/**", f"/**/{node_name}", node_name, f"/{node_name}"):
        values.update((doc.get(key) or {}).get("ros__parameters", {}))
    return values


def console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [ast.literal_eval(item) for item in value.elts]
                    return dict(re.split(r"\s*=\s*", entry, maxsplit=1) for entry in entries)
    raise AssertionError("setup.py has no console_scripts")


def launched_graph(path: Path) -> str:
    """The graph a launch file hands to launch_description()."""
    calls = [
        n for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "launch_description"
    ]
    assert len(calls) == 1, f"{path.name} must call launch_description(<graph>) once"
    return ast.literal_eval(calls[0].args[0])


def test_every_graph_has_a_launch_file():
    assert {launched_graph(p) for p in LAUNCH_FILES} == set(GRAPHS)
    for path in LAUNCH_FILES:
        assert path.name == f"{launched_graph(path)}.launch.py"
        assert "def generate_launch_description" in path.read_text()


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_graph_nodes_are_installed_executables_with_valid_params_files(graph):
    scripts = console_scripts()
    for spec in GRAPHS[graph].nodes:
        assert spec.executable in scripts, f"{spec.executable} is not a console script in setup.py"
        params_file = ROOT / "config" / spec.params_file
        doc = yaml.safe_load(params_file.read_text())
        assert list(doc) == [f"/**/{spec.name}"], f"{params_file.name}: key it by node name"
        declared = {p.name: p for p in node_class(spec.executable).declared_params()}
        values = node_parameters(params_file, spec.name)
        # the generated text reads back as the code's defaults, types included
        assert values.keys() == declared.keys(), f"{params_file.name} and {spec.executable} declare different params"
        for name, value in values.items():
            assert type(value) is type(declared[name].default), f"{params_file.name}: {name} has the wrong type"
            assert value == declared[name].default, f"{params_file.name}: {name}={value!r}, code says {declared[name].default!r}"
        for param, arg in spec.parameters:
            assert param in declared, f"graph {graph} sets unknown parameter {param} of {spec.name}"
            assert isinstance(declared[param].default, arg.kind)


def test_params_files_are_generated_from_the_nodes_parameters():
    """config/<node>.yaml is the text the node's declared parameters give: the code holds each default once."""
    stale = [name for name, text in params_files().items() if (ROOT / "config" / name).read_text() != text]
    assert not stale, (f"out of date with the nodes' parameters: config/{', config/'.join(stale)}; rerun "
                       "`refine-perception params write` (./dev run refine-perception params write) and commit the result")


# the nodes whose output-shaping parameters a ROS-free settings dataclass holds
NODE_SETTINGS = [("lane_detector", PipelineSettings), ("instance_segmenter", InstanceSettings),
                 ("street_segmenter", StreetSettings)]


@pytest.mark.parametrize("executable, settings", NODE_SETTINGS)
def test_every_settings_field_is_a_node_parameter_with_its_default(executable, settings):
    """A settings field the node does not declare would never be set from ROS; Param.of gives it its default."""
    declared = {p.name: p.default for p in node_class(executable).declared_params()}
    for field in fields(settings):
        assert field.name in declared, f"{settings.__name__}.{field.name} is no parameter of {executable}: add a Param.of"
        assert type(declared[field.name]) is type(field.default) and declared[field.name] == field.default, (
            f"{executable} declares {field.name}={declared[field.name]!r}, {settings.__name__} says {field.default!r}")


def test_every_settings_dataclass_is_checked_against_its_node():
    for executable in NODE_CLASSES:
        node_class(executable)  # imports every pipeline a node uses
    assert set(FromParams.__subclasses__()) == {settings for _, settings in NODE_SETTINGS}, \
        "a new settings dataclass: list it with its node in NODE_SETTINGS"


def test_every_node_executable_starts_from_the_light_entry_module():
    """setup.py's console scripts and executables.NODE_CLASSES name the same nodes, each through the entry
    point that keeps a signal during the imports quiet."""
    scripts = console_scripts()
    nodes = {name: entry for name, entry in scripts.items() if name not in ("refine-perception", "refine-train")}
    assert nodes == {name: f"refine_perception.ros.executables:{name}" for name in NODE_CLASSES}


def test_input_qos_defaults_to_sensor_data_depth_1():
    converter = node_class("image_converter")
    params = {p.name: p.default for p in converter.PARAMS}
    assert params["input_qos"] == "sensor_data" and params["input_depth"] == 1


def test_plan_resolves_arguments_like_ros2_launch(tmp_path):
    config = ROOT / "config"
    plans = plan("camera", {"rate_hz": "5", "namespace": "car1", "use_sim_time": "true"}, config)
    camera = next(p for p in plans if p.name == "camera_source")
    assert camera.overrides == {"use_sim_time": True, "rate_hz": 5.0}
    assert camera.params_file == config / "camera_source.yaml"
    args = camera.ros_args()
    assert args[:3] == ["--ros-args", "-r", "__node:=camera_source"]
    assert "__ns:=/car1" in args and "rate_hz:=5.0" in args and "use_sim_time:=true" in args
    assert ("image_raw", "camera/image_raw") in camera.remappings
    custom = tmp_path / "mine.yaml"
    custom.write_text("/**/camera_source:\n  ros__parameters:\n    rate_hz: 3.0\n")
    plans = plan("camera", {"camera_source_params_file": str(custom)}, config)
    assert plans[0].params_file == custom and "rate_hz" not in plans[0].overrides


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nope": "1"}, "has no argument 'nope'"),
        ({"transport": "carrier-pigeon"}, "is not one of"),
        ({"rate_hz": "fast"}, "is not a valid float"),
        ({"use_sim_time": "yes"}, "is not one of"),
    ],
)
def test_plan_rejects_bad_arguments(values, message):
    with pytest.raises(GraphError, match=message):
        plan("camera", values, ROOT / "config")
    with pytest.raises(GraphError, match="unknown graph"):
        plan("no_such_graph", {}, ROOT / "config")


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros needs a ROS 2 install")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds(path):
    from launch.actions import DeclareLaunchArgument

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("launch_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert declared == {a.name for a in GRAPHS[launched_graph(path)].all_args}
    assert LaunchContext() is not None
