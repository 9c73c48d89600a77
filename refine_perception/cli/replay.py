"""`refine-perception replay`: play a bag through the node it has ground truth for and score it: a lane bag
(/ground_truth/lanes) through the lane detector, a sticks bag (/ground_truth/instances) through the
instance segmenter, a street bag (/ground_truth/labels) through the street segmenter.

Modes: lossless (default: every frame waits for its result, so every frame is scored), realtime (the
bag's pace; frames the node cannot keep up with are dropped and counted), offline (the node's own
pipeline straight on the bag, no DDS: in lossless mode the replay's figures equal these exactly).
With --results, scores outputs recorded elsewhere (e.g. `ros2 bag record /lanes`) without running anything.
Writes report.md, figures.json, PNG plots and the recorded outputs (results/) into --out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from refine_perception.cli import CliError
from refine_perception.runtime.config import BACKENDS


@dataclass(frozen=True)
class _Task:
    """What differs between replaying lanes and instances."""

    node: str  # node name, also its params key and executable
    params_file: str  # in config/
    graph: str
    topic: str  # its output, as recorded


_TASKS = {
    "lanes": _Task("lane_detector", "lanes.yaml", "replay", "/lanes"),
    "instances": _Task("instance_segmenter", "instances.yaml", "replay_instances", "/instances"),
    "street": _Task("street_segmenter", "street_segmenter.yaml", "replay_street", "/labels"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="play a bag through the lane detector, instance or street segmenter and write a "
                       "report",
                       description=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 folder, .mcap or .db3 with /ground_truth/lanes, "
                   "/ground_truth/instances or /ground_truth/labels")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--task", choices=("auto", *_TASKS), default="auto",
                   help="which node to run (default: the one the bag has ground truth for)")
    p.add_argument("--mode", choices=("lossless", "realtime", "offline"), default="lossless")
    p.add_argument("--rate", type=float, default=1.0, help="realtime playback speed (default 1)")
    p.add_argument("--results", type=Path, help="score this result bag instead of running the node")
    p.add_argument("--results-topic", help="output topic in --results (default /lanes, /instances or /labels)")
    p.add_argument("--params", type=Path, help="the node's params file (default: config/lanes.yaml plus the bag's "
                   "lane_detector.yaml, if it has one; config/instances.yaml; config/street_segmenter.yaml)")
    p.add_argument("--backend", choices=BACKENDS, help="the network's backend (default: the params file's)")
    p.add_argument("--image-topic", help="the bag's camera topic (default: its only image topic)")
    p.add_argument("--camera-info-topic", help="the bag's CameraInfo topic (default: its only one)")
    p.add_argument("--cut-ratio", type=float, default=270 / 590,
                   help="lanes: rows above this fraction of the height are not scored (CULane: 270/590)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=replay)


def node_params(task: _Task, bag: Path, params: Path | None, backend: str | None) -> dict[str, Any]:
    """The node's ros__parameters for this bag: every declared default, then the params file(s) and
    --backend on top, so the offline run reads the same values the node would."""
    import yaml

    from refine_perception.cli.bags import DETECTOR_PARAMS
    from refine_perception.ros.graph_runner import node_class
    from refine_perception.share import config_dir

    def load(path: Path) -> dict[str, Any]:
        try:
            return dict(yaml.safe_load(path.read_text())[f"/**/{task.node}"]["ros__parameters"])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
            raise CliError(f"{path}: not a {task.node} params file ({error})") from None

    values = {param.name: param.default for param in node_class(task.node).declared_params()}
    values.update(load(params or config_dir() / task.params_file))
    folder = bag if bag.is_dir() else bag.parent
    if params is None and task.node == "lane_detector" and (folder / DETECTOR_PARAMS).is_file():
        values.update(load(folder / DETECTOR_PARAMS))
    if backend:
        values["backend"] = backend
    return values


def _detect_task(bag: Path) -> str:
    from refine_perception.bags.instance_bags import TRUTH_INSTANCES_TOPIC
    from refine_perception.bags.reader import BagError, BagReader
    from refine_perception.bags.street_bags import TRUTH_LABELS_TOPIC

    try:
        topics = BagReader(bag).topics()
    except BagError as error:
        raise CliError(str(error)) from None
    if TRUTH_LABELS_TOPIC in topics:
        return "street"
    return "instances" if TRUTH_INSTANCES_TOPIC in topics else "lanes"


def replay(args: argparse.Namespace) -> int:
    import json

    import yaml

    from refine_perception.bags.instance_bags import read_instance_bag
    from refine_perception.bags.lane_bags import read_lane_bag
    from refine_perception.bags.reader import BagError
    from refine_perception.bags.street_bags import read_street_bag
    from refine_perception.evaluation.replay import evaluate_instance_run, evaluate_lane_run, evaluate_street_run
    from refine_perception.evaluation.report import summary_lines, write_report

    started = time.perf_counter()
    name = _detect_task(args.bag) if args.task == "auto" else args.task
    task = _TASKS[name]
    try:
        read = {"lanes": read_lane_bag, "instances": read_instance_bag, "street": read_street_bag}[name]
        bag = read(args.bag, args.image_topic, args.camera_info_topic)
    except BagError as error:
        raise CliError(str(error)) from None
    results = args.results or args.out / "results"
    if args.results is None:
        params = node_params(task, args.bag, args.params, args.backend)
        if name != "lanes":  # match only what the bag has, or the node would wait for it forever
            params["use_camera_info"] = bool(params["use_camera_info"] and bag.camera_info_topic)
        if name == "instances":
            params["use_depth"] = bool(params["use_depth"] and bag.depth_topic)
        args.out.mkdir(parents=True, exist_ok=True)
        if name != "lanes" and args.mode != "offline":
            _check_model(name, params)  # a node without its model would leave a lossless replay waiting
        if args.mode == "offline":
            _offline(name, bag, params, results)
        else:
            with tempfile.TemporaryDirectory() as folder:
                params_file = Path(folder) / f"{task.node}.yaml"
                params_file.write_text(yaml.safe_dump({f"/**/{task.node}": {"ros__parameters": params}}))
                _play(args, task, bag, params_file, results)
    topic = args.results_topic or task.topic
    try:
        if name == "lanes":
            evaluation = evaluate_lane_run(bag, results, topic, cut_ratio=args.cut_ratio)
        elif name == "instances":
            evaluation = evaluate_instance_run(bag, results, topic)
        else:
            evaluation = evaluate_street_run(bag, results, topic)
    except (BagError, ValueError) as error:  # ValueError: outputs that do not fit the frames they are for
        raise CliError(str(error)) from None
    report = write_report(evaluation, args.out)
    figures = evaluation.to_dict()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("\n".join(summary_lines(figures)))
        print(f"report: {report} ({time.perf_counter() - started:.1f} s)")
    return 0


NO_DEFAULT = {
    "instances": "no default instance weights are shipped yet: train them (refine-train instances --config "
                 "config/training/instances_sticks_discriminative_cpu.yaml) and pass --params with model: set",
    "street": "no default street weights are shipped yet: train them (refine-train street --config "
              "config/training/street_lrn_cpu.yaml) and pass --params with model: set",
}


def _model_hint(name: str, params: dict[str, Any]) -> str:
    """What to do about a missing default model (nothing when the params name a model)."""
    if params["model"] or name not in NO_DEFAULT:
        return ""
    from refine_perception.instances.pipeline import default_instance_model_path
    from refine_perception.segmentation.pipeline import default_street_model_path

    default = default_instance_model_path() if name == "instances" else default_street_model_path()
    return "" if default.is_file() else f" ({NO_DEFAULT[name]})"


def _check_model(name: str, params: dict[str, Any]) -> None:
    from refine_perception.instances.decoders import FORMATS
    from refine_perception.instances.pipeline import default_instance_model_path
    from refine_perception.models.lrn.weights import FORMAT as STREET_FORMAT
    from refine_perception.models.model_file import ModelFileError
    from refine_perception.runtime import load_task_model
    from refine_perception.segmentation.pipeline import default_street_model_path

    default, formats = ((default_instance_model_path(), FORMATS) if name == "instances" else
                        (default_street_model_path(), STREET_FORMAT))
    try:
        load_task_model(params["model"] or default, formats)
    except ModelFileError as error:
        raise CliError(f"cannot load the {name} model: {error}{_model_hint(name, params)}") from None


def _offline(name: str, bag: Any, params: dict[str, Any], results: Path) -> None:
    from refine_perception.boundaries.stage import BoundaryStage
    from refine_perception.evaluation.replay import run_offline
    from refine_perception.models.model_file import ModelFileError
    from refine_perception.runtime import BackendError, UnsupportedCombination

    slop = params["sync_slop_s"]
    runtime = tuple(params[name] for name in ("model", "backend", "device", "precision", "threads"))
    try:
        if name == "lanes":
            from refine_perception.lanes.pipeline import LanePipeline, PipelineSettings, open_predictor
            from refine_perception.ros.lane_messages import lanes_from_messages

            predictor, cut_ratio, _ = open_predictor(*runtime)
            lanes = LanePipeline(predictor, PipelineSettings.from_params(params), cut_ratio)
            inputs = [bag.image_topic] + ([bag.camera_info_topic] if bag.camera_info_topic else [])
            run_offline(bag, partial(lanes_from_messages, lanes), [_TASKS[name].topic], inputs, results, slop)
            return
        if name == "street":
            from refine_perception.ros.street_messages import street_from_messages
            from refine_perception.segmentation.pipeline import StreetPipeline, StreetSettings, open_street_predictor

            settings = StreetSettings.from_params(params)
            street_predictor, _ = open_street_predictor(*runtime, settings)
            street = StreetPipeline(street_predictor, settings, BoundaryStage.of_params(params, "street"))
            run_offline(bag, partial(street_from_messages, street), ["/labels", "/instances"], [bag.image_topic],
                        results, slop)
            return
        from refine_perception.instances.pipeline import InstancePipeline, InstanceSettings, open_instance_predictor
        from refine_perception.ros.instance_messages import instances_from_messages

        predictor, _ = open_instance_predictor(*runtime)
        refiner = BoundaryStage.of_params(params, "sticks")
    except (ModelFileError, BackendError, UnsupportedCombination, OSError) as error:
        raise CliError(f"cannot load the {name} model: {error}{_model_hint(name, params)}") from None
    inputs = [bag.image_topic]
    if params["use_camera_info"]:
        inputs.append(bag.camera_info_topic)
        if params["use_depth"]:
            inputs.append(bag.depth_topic)
    instances = InstancePipeline(predictor, InstanceSettings.from_params(params), refiner)
    run_offline(bag, partial(instances_from_messages, instances), [_TASKS[name].topic], inputs, results, slop)


def _play(args: argparse.Namespace, task: _Task, bag: Any, params_file: Path, results: Path) -> None:
    from refine_perception.graphs import GraphError
    from refine_perception.ros.graph_runner import NodeStartError, run_graph

    if bag.compressed and not bag.image_topic.endswith("/compressed"):
        raise CliError(f"{bag.image_topic}: the node subscribes to <image_topic>/compressed (image_transport "
                       "naming); use --mode offline for this bag")
    values = {
        "bag": str(args.bag), "mode": args.mode, "rate": str(args.rate), "result_bag": str(results),
        "bag_image_topic": bag.image_topic,
        "transport": "compressed" if bag.compressed else "raw",
        "image_topic": bag.image_topic.removesuffix("/compressed") if bag.compressed else bag.image_topic,
        f"{task.node}_params_file": str(params_file),
    }
    if bag.camera_info_topic:
        values["camera_info_topic"] = bag.camera_info_topic
    if getattr(bag, "depth_topic", None):
        values["depth_topic"] = bag.depth_topic

    def done(nodes: list[Any]) -> bool:
        return nodes[0].finished.is_set()

    try:
        nodes = run_graph(task.graph, values, until=done)
    except (GraphError, NodeStartError) as error:
        raise CliError(str(error)) from None
    player = nodes[0]
    if player.play_error:
        raise CliError(player.play_error)
