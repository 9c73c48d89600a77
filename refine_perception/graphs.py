"""The node graphs we ship, described once.

`launch/*.launch.py` turn a graph into ROS 2 launch actions (for users with a ROS install) and
`refine-perception launch` runs the same graph in one process (for machines without ros2 launch). Both
go through `plan()` below with the same params files from config/, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from refine_perception import share
from refine_perception.runtime.config import BACKENDS, PRECISIONS


@dataclass(frozen=True)
class Arg:
    """A launch argument, `name:=value` on either command line. For an argument that sets a node
    parameter, the empty default means: keep the value of the node's params file."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()
    kind: type = str  # type of the node parameter it sets

    def parse(self, text: str) -> Any:
        if self.kind is bool:
            if text not in ("true", "false"):
                raise GraphError(f"{self.name}:={text!r} must be true or false")
            return text == "true"
        try:
            return self.kind(text)
        except ValueError:
            raise GraphError(f"{self.name}:={text!r} is not a valid {self.kind.__name__}") from None


@dataclass(frozen=True)
class ArgTopic:
    """A remapping target taken from a launch argument, plus a suffix (e.g. "/compressed")."""

    arg: Arg
    suffix: str = ""


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph. Remappings and parameters may take their value from a launch argument;
    `enabled_by` names a true/false argument that decides whether the node starts at all."""

    executable: str  # console script of this package, also what launch_ros runs
    name: str
    params_file: str  # file name in config/
    remappings: tuple[tuple[str, str | ArgTopic], ...] = ()
    parameters: tuple[tuple[str, Arg], ...] = ()
    enabled_by: Arg | None = None

    @property
    def params_arg(self) -> Arg:
        return Arg(f"{self.name}_params_file", "", f"Params file of {self.name} (empty: config/{self.params_file})")


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    nodes: tuple[NodeSpec, ...]
    args: tuple[Arg, ...] = ()

    @property
    def all_args(self) -> tuple[Arg, ...]:
        """The graph's arguments, the common ones (a graph may give one of those its own default) and a
        params file per node."""
        own = {arg.name for arg in self.args}
        return (*self.args, *(a for a in COMMON_ARGS if a.name not in own), *(node.params_arg for node in self.nodes))


@dataclass(frozen=True)
class NodePlan:
    """One node to start, everything resolved to plain values."""

    executable: str
    name: str
    namespace: str
    params_file: Path
    overrides: dict[str, Any]
    remappings: tuple[tuple[str, str], ...]
    log_level: str

    def ros_args(self) -> list[str]:
        """The same node as command-line ROS arguments (what launch_ros passes to the executable)."""
        args = ["--ros-args", "-r", f"__node:={self.name}", "--params-file", str(self.params_file)]
        if self.namespace:
            args += ["-r", f"__ns:={_absolute(self.namespace)}"]
        for key, value in self.overrides.items():
            args += ["-p", f"{key}:={yaml_text(value)}"]
        for src, dst in self.remappings:
            args += ["-r", f"{src}:={dst}"]
        return args + ["--log-level", self.log_level]


COMMON_ARGS = (
    Arg("namespace", "", "Namespace of every node of the graph"),
    Arg("use_sim_time", "false", "Take time from /clock (bag replay)", ("true", "false")),
    Arg("log_level", "info", "Log level of every node", ("debug", "info", "warn", "error")),
)

SOURCE = Arg("source", "", "Video file, image folder or glob for the camera (empty: params file)")
STICKS_SOURCE = Arg("source", "synthetic:sticks", "The camera's source: synthetic:sticks?seed=2&frames=20&width=640"
                    "&height=480 (scenes with depth), a video file, an image folder or a glob")
STREET_SOURCE = Arg("source", "synthetic:street", "The camera's source: synthetic:street?seed=2&frames=20&width=1024"
                    "&height=512 (street scenes), a video file, an image folder or a glob")
RATE = Arg("rate_hz", "", "Camera rate in Hz, 0 = lock-step with the consumer (empty: params file)", kind=float)
FRAMES = Arg("max_frames", "", "Stop the camera after this many frames, 0 = no limit (empty: params file)", kind=int)
TRANSPORT = Arg("transport", "", "Camera transport, raw or compressed (empty: params file)", ("", "raw", "compressed"))

IMAGE_TOPIC = Arg("image_topic", "camera/image_raw", "Image topic the lane detector reads (+ /compressed)")
CAMERA_INFO_TOPIC = Arg("camera_info_topic", "camera/camera_info", "CameraInfo topic matched to the images")
BACKEND = Arg("backend", "", "Inference backend (empty: params file)", ("", *BACKENDS))
PRECISION = Arg("precision", "", "Inference precision (empty: params file)", ("", *PRECISIONS))
SCORE = Arg("score", "false", "Score the lanes against ground_truth/lanes (the synthetic drive publishes it)",
            ("true", "false"), kind=bool)
LANES_TRANSPORT = Arg("transport", "raw", "Image transport between camera and detector", ("raw", "compressed"))
CAMERA = Arg("camera", "true", "Start our camera_source (false: bring your own camera on image_topic)",
             ("true", "false"), kind=bool)
BAG = Arg("bag", "", "The bag to play (rosbag2 folder, .mcap or .db3)")
PLAY_MODE = Arg("mode", "", "realtime (recorded pace, late frames dropped) or lossless (empty: params file)",
                ("", "realtime", "lossless"))
PLAY_RATE = Arg("rate", "", "Playback speed in realtime mode (empty: params file)", kind=float)
BAG_IMAGE_TOPIC = Arg("bag_image_topic", "", "The bag's camera topic if it has several image topics")
RESULT_BAG = Arg("result_bag", "", "Record the detector's lanes into this bag (empty: params file)")
SIM_TIME = Arg("use_sim_time", "true", "Take time from /clock (the player publishes the bag's)", ("true", "false"))
INSTANCE_IMAGE_TOPIC = Arg("image_topic", "camera/image_raw", "Image topic the instance segmenter reads (+ /compressed)")
LANE_RECORD = Arg("record", "", "Outputs the player records, topic:type,... (empty: params file: the lanes)")
INSTANCE_RECORD = Arg("record", "instances:refine_msgs/msg/InstanceArray,instance_markers:visualization_msgs/msg/"
                      "MarkerArray,/diagnostics:diagnostic_msgs/msg/DiagnosticArray",
                      "Outputs the player records, topic:type,...; lossless mode waits for the first")
STREET_IMAGE_TOPIC = Arg("image_topic", "camera/image_raw", "Image topic the street segmenter reads (+ /compressed)")
STREET_RECORD = Arg("record", "labels:sensor_msgs/msg/Image,instances:refine_msgs/msg/InstanceArray,/diagnostics:"
                    "diagnostic_msgs/msg/DiagnosticArray",
                    "Outputs the player records, topic:type,...; lossless mode waits for the first")
DEPTH_TOPIC = Arg("depth_topic", "camera/depth/image_raw", "Depth image topic matched to the images (for grasps)")
CAMERA_REMAPS = (
    ("image_raw", "camera/image_raw"),
    ("image_raw/compressed", "camera/image_raw/compressed"),
    ("camera_info", "camera/camera_info"),
)

def camera_source(transport: Arg, enabled_by: Arg | None = None, source: Arg = SOURCE) -> NodeSpec:
    """Our camera source on camera/... (a source with depth also on camera/depth/image_raw), its source,
    rate, frame count and transport set by launch arguments."""
    return NodeSpec(
        "camera_source",
        "camera_source",
        "camera_source.yaml",
        remappings=(*CAMERA_REMAPS, ("depth/image_raw", "camera/depth/image_raw")),
        parameters=(("source", source), ("rate_hz", RATE), ("max_frames", FRAMES), ("transport", transport)),
        enabled_by=enabled_by,
    )


LANE_DETECTOR = NodeSpec(
    "lane_detector",
    "lane_detector",
    "lanes.yaml",
    remappings=(
        ("image_raw", ArgTopic(IMAGE_TOPIC)),
        ("image_raw/compressed", ArgTopic(IMAGE_TOPIC, "/compressed")),
        ("camera_info", ArgTopic(CAMERA_INFO_TOPIC)),
    ),
    parameters=(("transport", LANES_TRANSPORT), ("backend", BACKEND), ("precision", PRECISION)),
)

INSTANCE_SEGMENTER = NodeSpec(
    "instance_segmenter",
    "instance_segmenter",
    "instances.yaml",
    remappings=(
        ("image_raw", ArgTopic(INSTANCE_IMAGE_TOPIC)),
        ("image_raw/compressed", ArgTopic(INSTANCE_IMAGE_TOPIC, "/compressed")),
        ("camera_info", ArgTopic(CAMERA_INFO_TOPIC)),
        ("depth/image_raw", ArgTopic(DEPTH_TOPIC)),
    ),
    parameters=(("transport", LANES_TRANSPORT), ("backend", BACKEND), ("precision", PRECISION)),
)

STREET_SEGMENTER = NodeSpec(
    "street_segmenter",
    "street_segmenter",
    "street_segmenter.yaml",
    remappings=(
        ("image_raw", ArgTopic(STREET_IMAGE_TOPIC)),
        ("image_raw/compressed", ArgTopic(STREET_IMAGE_TOPIC, "/compressed")),
        ("camera_info", ArgTopic(CAMERA_INFO_TOPIC)),
    ),
    parameters=(("transport", LANES_TRANSPORT), ("backend", BACKEND), ("precision", PRECISION)),
)


def bag_player(record: Arg) -> NodeSpec:
    """Our bag player, its bag, mode, rate, result bag, camera topic and recorded outputs (the first is
    waited for in lossless mode) set by launch arguments."""
    return NodeSpec(
        "bag_player",
        "bag_player",
        "bag_player.yaml",
        parameters=(("bag", BAG), ("mode", PLAY_MODE), ("rate", PLAY_RATE), ("result_bag", RESULT_BAG),
                    ("image_topic", BAG_IMAGE_TOPIC), ("record", record)),
    )


GRAPHS: dict[str, Graph] = {
    graph.name: graph
    for graph in (
        Graph(
            "camera",
            "A camera source, an image converter decoding its frames, and a monitor printing what flows",
            nodes=(
                camera_source(TRANSPORT),
                NodeSpec(
                    "image_converter",
                    "image_converter",
                    "image_converter.yaml",
                    remappings=(*CAMERA_REMAPS, ("image", "camera/image")),
                    parameters=(("transport", TRANSPORT),),
                ),
                NodeSpec("topic_monitor", "topic_monitor", "topic_monitor.yaml"),
            ),
            args=(SOURCE, RATE, FRAMES, TRANSPORT),
        ),
        Graph(
            "replay",
            "A bag played with /clock into the lane detector; its lanes recorded for evaluation",
            nodes=(bag_player(LANE_RECORD), LANE_DETECTOR),
            args=(BAG, PLAY_MODE, PLAY_RATE, RESULT_BAG, BAG_IMAGE_TOPIC, LANES_TRANSPORT, IMAGE_TOPIC, CAMERA_INFO_TOPIC,
                  BACKEND, PRECISION, SIM_TIME, LANE_RECORD),
        ),
        Graph(
            "replay_instances",
            "A bag played with /clock into the instance segmenter; its instances (with grasps) recorded for evaluation",
            nodes=(bag_player(INSTANCE_RECORD), INSTANCE_SEGMENTER),
            args=(BAG, PLAY_MODE, PLAY_RATE, RESULT_BAG, BAG_IMAGE_TOPIC, LANES_TRANSPORT, INSTANCE_IMAGE_TOPIC,
                  CAMERA_INFO_TOPIC, DEPTH_TOPIC, BACKEND, PRECISION, SIM_TIME, INSTANCE_RECORD),
        ),
        Graph(
            "replay_street",
            "A bag played with /clock into the street segmenter; its label images and instances recorded for "
            "evaluation",
            nodes=(bag_player(STREET_RECORD), STREET_SEGMENTER),
            args=(BAG, PLAY_MODE, PLAY_RATE, RESULT_BAG, BAG_IMAGE_TOPIC, LANES_TRANSPORT, STREET_IMAGE_TOPIC,
                  CAMERA_INFO_TOPIC, BACKEND, PRECISION, SIM_TIME, STREET_RECORD),
        ),
        Graph(
            "lanes",
            "The lane detector on a camera topic (by default our camera source playing the synthetic drive)",
            nodes=(
                camera_source(LANES_TRANSPORT, enabled_by=CAMERA),
                LANE_DETECTOR,
                NodeSpec(
                    "lane_scorer",
                    "lane_scorer",
                    "lane_scorer.yaml",
                    enabled_by=SCORE,
                ),
            ),
            args=(CAMERA, SOURCE, RATE, FRAMES, LANES_TRANSPORT, IMAGE_TOPIC, CAMERA_INFO_TOPIC, BACKEND, PRECISION, SCORE),
        ),
        Graph(
            "sticks",
            "The instance segmenter with grasps on a camera topic (by default our camera source playing synthetic "
            "sticks scenes with depth)",
            nodes=(camera_source(LANES_TRANSPORT, enabled_by=CAMERA, source=STICKS_SOURCE), INSTANCE_SEGMENTER),
            args=(CAMERA, STICKS_SOURCE, RATE, FRAMES, LANES_TRANSPORT, INSTANCE_IMAGE_TOPIC, CAMERA_INFO_TOPIC,
                  DEPTH_TOPIC, BACKEND, PRECISION),
        ),
        Graph(
            "segmentation",
            "The street segmenter (coarse-to-fine label map, car and person instances) on a camera topic (by "
            "default our camera source playing synthetic street scenes)",
            nodes=(camera_source(LANES_TRANSPORT, enabled_by=CAMERA, source=STREET_SOURCE), STREET_SEGMENTER),
            args=(CAMERA, STREET_SOURCE, RATE, FRAMES, LANES_TRANSPORT, STREET_IMAGE_TOPIC, CAMERA_INFO_TOPIC, BACKEND,
                  PRECISION),
        ),
    )
}


class GraphError(ValueError):
    """An unknown graph or argument, or an argument value that is not allowed."""


def plan(graph_name: str, values: dict[str, str], config_dir: str | Path) -> list[NodePlan]:
    """Resolve a graph with `name:=value` launch arguments into the nodes to start."""
    if graph_name not in GRAPHS:
        raise GraphError(f"unknown graph {graph_name!r}; available: {', '.join(GRAPHS)}")
    graph = GRAPHS[graph_name]
    known = {arg.name: arg for arg in graph.all_args}
    for name, value in values.items():
        if name not in known:
            raise GraphError(f"graph {graph_name} has no argument {name!r}; it has: {', '.join(known)}")
        if known[name].choices and value not in known[name].choices:
            raise GraphError(f"{name}:={value!r} is not one of {', '.join(known[name].choices)}")
    resolved = {name: values.get(name, arg.default) for name, arg in known.items()}
    plans = []
    for node in graph.nodes:
        if node.enabled_by is not None and not node.enabled_by.parse(resolved[node.enabled_by.name]):
            continue
        remappings = tuple(
            (src, dst if isinstance(dst, str) else resolved[dst.arg.name] + dst.suffix) for src, dst in node.remappings
        )
        overrides: dict[str, Any] = {"use_sim_time": resolved["use_sim_time"] == "true"}
        for param, arg in node.parameters:
            if resolved[arg.name] != "":
                overrides[param] = arg.parse(resolved[arg.name])
        plans.append(
            NodePlan(
                executable=node.executable,
                name=node.name,
                namespace=resolved["namespace"],
                params_file=Path(resolved[node.params_arg.name] or Path(config_dir) / node.params_file),
                overrides=overrides,
                remappings=remappings,
                log_level=resolved["log_level"],
            )
        )
    return plans


def _absolute(namespace: str) -> str:
    return namespace if namespace.startswith("/") else "/" + namespace


def yaml_text(value: Any) -> str:
    """`value` as one line of YAML (a string double-quoted): a `-p name:=value` argument or a params-file entry."""
    if isinstance(value, str):
        return yaml.safe_dump(value, default_style='"', width=float("inf")).strip()
    return yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip().removesuffix("\n...")


def launch_description(graph_name: str) -> Any:
    """The ROS 2 launch description of a graph (launch and launch_ros come with a ROS install)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node

    from launch import LaunchDescription

    graph = GRAPHS[graph_name]
    config = str(share.config_dir())

    def nodes(context: Any) -> list[Any]:
        values = {arg.name: context.launch_configurations[arg.name] for arg in graph.all_args}
        return [
            Node(
                package=share.PACKAGE,
                executable=node.executable,
                name=node.name,
                namespace=node.namespace,
                parameters=[str(node.params_file), node.overrides],
                remappings=list(node.remappings),
                arguments=["--ros-args", "--log-level", node.log_level],
                output="screen",
                emulate_tty=True,
            )
            for node in plan(graph_name, values, config)
        ]

    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description, choices=list(a.choices) or None)
        for a in graph.all_args
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
