"""`refine-perception replay`: play a lane bag through the lane detector and score it.

Modes: lossless (default: every frame waits for its lanes, so every frame is scored), realtime (the
bag's pace; frames the node cannot keep up with are dropped and counted), offline (the detector's own
pipeline straight on the bag, no DDS: in lossless mode the replay's figures equal these exactly).
With --results, scores lanes recorded elsewhere (e.g. `ros2 bag record /lanes`) without running anything.
Writes report.md, figures.json, PNG plots and the recorded lanes (results/) into --out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from refine_perception.cli import CliError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="play a lane bag through the lane detector and write a report",
                       description=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="lane bag (rosbag2 folder, .mcap or .db3) with /ground_truth/lanes")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--mode", choices=("lossless", "realtime", "offline"), default="lossless")
    p.add_argument("--rate", type=float, default=1.0, help="realtime playback speed (default 1)")
    p.add_argument("--results", type=Path, help="score this result bag instead of running the detector")
    p.add_argument("--results-topic", default="/lanes", help="LaneArray topic of --results (default /lanes)")
    p.add_argument("--params", type=Path, help="lane_detector params file (default: config/lanes.yaml plus the "
                   "bag's lane_detector.yaml, if it has one)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"), help="override the params file")
    p.add_argument("--image-topic", help="the bag's camera topic (default: its only image topic)")
    p.add_argument("--camera-info-topic", help="the bag's CameraInfo topic (default: its only one)")
    p.add_argument("--cut-ratio", type=float, default=270 / 590,
                   help="rows above this fraction of the height are not scored (CULane: 270/590)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=replay)


def detector_params(bag: Path, params: Path | None, backend: str | None) -> dict[str, Any]:
    """The lane_detector's ros__parameters for this bag."""
    import yaml

    from refine_perception.cli.bags import DETECTOR_PARAMS
    from refine_perception.ros.graph_runner import config_dir

    def load(path: Path) -> dict[str, Any]:
        try:
            return dict(yaml.safe_load(path.read_text())["/**/lane_detector"]["ros__parameters"])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
            raise CliError(f"{path}: not a lane_detector params file ({error})") from None

    values = load(params or config_dir() / "lanes.yaml")
    folder = bag if bag.is_dir() else bag.parent
    if params is None and (folder / DETECTOR_PARAMS).is_file():
        values.update(load(folder / DETECTOR_PARAMS))
    if backend:
        values["backend"] = backend
    return values


def replay(args: argparse.Namespace) -> int:
    import json

    import yaml

    from refine_perception.bags.lane_bags import read_lane_bag
    from refine_perception.bags.reader import BagError
    from refine_perception.evaluation.replay import evaluate_lane_run
    from refine_perception.evaluation.report import summary_lines, write_report

    started = time.perf_counter()
    try:
        bag = read_lane_bag(args.bag, args.image_topic, args.camera_info_topic)
    except BagError as error:
        raise CliError(str(error)) from None
    results = args.results or args.out / "results"
    if args.results is None:
        params = detector_params(args.bag, args.params, args.backend)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.mode == "offline":
            _offline(bag, params, results)
        else:
            with tempfile.TemporaryDirectory() as folder:
                params_file = Path(folder) / "lane_detector.yaml"
                params_file.write_text(yaml.safe_dump({"/**/lane_detector": {"ros__parameters": params}}))
                _play(args, bag, params_file, results)
    try:
        evaluation = evaluate_lane_run(bag, results, args.results_topic, cut_ratio=args.cut_ratio)
    except BagError as error:
        raise CliError(str(error)) from None
    report = write_report(evaluation, args.out)
    figures = evaluation.to_dict()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print("\n".join(summary_lines(figures)))
        print(f"report: {report} ({time.perf_counter() - started:.1f} s)")
    return 0


def _offline(bag: Any, params: dict[str, Any], results: Path) -> None:
    from refine_perception.evaluation.replay import run_offline
    from refine_perception.lanes.backends import BackendError, UnsupportedCombination
    from refine_perception.models.clrnet.weights import ModelFileError
    from refine_perception.ros.lane_pipeline import LanePipeline, PipelineSettings, open_predictor

    try:
        predictor, cut_ratio, _ = open_predictor(str(params.get("model", "")), str(params.get("backend", "auto")),
                                                 str(params.get("device", "")), str(params.get("precision", "auto")),
                                                 int(params.get("threads", 0)))
    except (ModelFileError, BackendError, UnsupportedCombination, OSError) as error:
        raise CliError(f"cannot load the lane model: {error}") from None
    pipeline = LanePipeline(predictor, PipelineSettings.from_params(params), cut_ratio)
    run_offline(bag, pipeline, results, slop_s=float(params.get("sync_slop_s", 0.02)))


def _play(args: argparse.Namespace, bag: Any, params_file: Path, results: Path) -> None:
    from refine_perception.graphs import GraphError
    from refine_perception.ros.graph_runner import NodeStartError, run_graph

    if bag.compressed and not bag.image_topic.endswith("/compressed"):
        raise CliError(f"{bag.image_topic}: the detector subscribes to <image_topic>/compressed (image_transport "
                       "naming); use --mode offline for this bag")
    values = {
        "bag": str(args.bag), "mode": args.mode, "rate": str(args.rate), "result_bag": str(results),
        "bag_image_topic": bag.image_topic,
        "transport": "compressed" if bag.compressed else "raw",
        "image_topic": bag.image_topic.removesuffix("/compressed") if bag.compressed else bag.image_topic,
        "lane_detector_params_file": str(params_file),
    }
    if bag.camera_info_topic:
        values["camera_info_topic"] = bag.camera_info_topic

    def done(nodes: list[Any]) -> bool:
        return nodes[0].finished.is_set()

    try:
        nodes = run_graph("replay", values, until=done)
    except (GraphError, NodeStartError) as error:
        raise CliError(str(error)) from None
    player = nodes[0]
    if player.play_error:
        raise CliError(player.play_error)
