"""Node parameters: typed `Param` specs, their ROS descriptors, and the QoS profiles they name.

A node lists its parameters once, as `Param` entries; they are declared with descriptors (ranges,
choices, read-only) so `ros2 param describe` documents them. Each default lives in one place: a parameter
that shapes a pipeline's output takes it from the pipeline's settings dataclass (`Param.of`), and
`config/<node>.yaml` is generated from the node's `Param` list (`refine-perception params write`; a test
checks the committed files are current).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, replace
from types import SimpleNamespace
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from refine_perception.core.image_codec import MAX_IMAGE_PIXELS
from refine_perception.graphs import yaml_text
from refine_perception.runtime.config import BACKENDS, PRECISIONS

ParamValue = bool | int | float | str | list[str] | list[float] | list[int]

QOS_CHOICES = ("sensor_data", "reliable", "system_default")


@dataclass(frozen=True)
class Param:
    """One node parameter: its default (which fixes its type), meaning, and allowed values."""

    name: str
    default: ParamValue
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False

    @classmethod
    def of(cls, settings: type, name: str, description: str, **options: Any) -> Param:
        """The parameter whose default is field `name` of the settings dataclass `settings`, so node and
        pipeline cannot disagree; a name the dataclass lacks fails at import, not at the first frame."""
        field = next((f for f in fields(settings) if f.name == name), None)
        if field is None or field.default is MISSING:
            raise TypeError(f"{settings.__name__} has no field {name!r} with a default")
        return cls(name, field.default, description, **options)

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        desc.type = Parameter.Type.from_parameter_value(self.default).value
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.min is not None or self.max is not None:
            lo = self.min if self.min is not None else -1e300
            hi = self.max if self.max is not None else 1e300
            if isinstance(self.default, bool):
                raise TypeError(f"parameter {self.name}: a range makes no sense for a bool")
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(max(lo, -(2**63))), to_value=int(min(hi, 2**63 - 1)))]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi))]
        return desc

    def check(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None. (rclpy enforces ranges itself; choices are ours.)"""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        return None


def declare_params(node: Node, specs: Sequence[Param]) -> SimpleNamespace:
    """Declare `specs` on `node` and return their values as attributes. Later sets update the same
    namespace, so code reading it sees run-time changes. A value failing its spec's check (a choice
    rclpy cannot enforce) stops the start with ValueError, and is refused when set later."""
    by_name = {spec.name: spec for spec in specs}
    values = SimpleNamespace()
    for spec in by_name.values():
        value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        problem = spec.check(value)
        if problem:
            raise ValueError(f"{node.get_name()}: {problem}")
        setattr(values, spec.name, value)

    def on_set(params: list[Parameter]) -> SetParametersResult:
        for param in params:
            spec = by_name.get(param.name)
            problem = spec.check(param.value) if spec else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for param in params:
            if param.name in by_name:
                setattr(values, param.name, param.value)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


PARAMS_FILE_WIDTH = 110  # longest line of a generated params file; descriptions wrap to fit
_COMMENT_COLUMN = 37


def params_file_text(node_name: str, summary: str, params: Sequence[Param]) -> str:
    """A node's params file: `summary` as its header comment, then each parameter as `name: default  #
    description` under `/**/<node_name>: ros__parameters:`, so a reader of the file sees what the code
    declares, with the descriptions `ros2 param describe` shows."""
    lines = [f"# {line}" for line in textwrap.wrap(summary, PARAMS_FILE_WIDTH - 2)]
    lines += ["# Generated from the node's parameters by `refine-perception params write`: change them in the code.",
              f"/**/{node_name}:", "  ros__parameters:"]
    for param in params:
        entry = f"    {param.name}: {yaml_text(param.default)}"
        comment = param.description + (f" (one of: {', '.join(param.choices)})" if param.choices else "")
        column = max(_COMMENT_COLUMN, len(entry) + 2)
        if PARAMS_FILE_WIDTH - column < 42:  # no room beside a long value: the comment goes above it
            lines += [f"    # {line}" for line in textwrap.wrap(comment, PARAMS_FILE_WIDTH - 6)]
            lines.append(entry)
            continue
        wrapped = textwrap.wrap(comment, PARAMS_FILE_WIDTH - column - 2) or [""]
        lines.append(f"{entry:<{column}}# {wrapped[0]}".rstrip())
        lines += [f"{'':<{column}}# {line}" for line in wrapped[1:]]
    return "\n".join(lines) + "\n"


def qos_from_name(name: str, depth: int) -> QoSProfile:
    """QoS for an input topic. sensor_data (best effort) is REP-2003's choice for camera subscribers and
    matches both reliable and best-effort publishers; depth 1 keeps latency bounded under overload."""
    if name == "sensor_data":
        profile = QoSProfile(depth=depth)
        profile.reliability = qos_profile_sensor_data.reliability
        profile.durability = qos_profile_sensor_data.durability
        profile.history = HistoryPolicy.KEEP_LAST
        return profile
    if name == "reliable":
        return QoSProfile(
            depth=depth,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
            history=HistoryPolicy.KEEP_LAST,
        )
    if name == "system_default":
        return QoSProfile(depth=depth)
    raise ValueError(f"unknown QoS profile {name!r}; expected one of {', '.join(QOS_CHOICES)}")


INPUT_PARAMS = (
    Param("input_qos", "sensor_data", "QoS of the input subscriptions; sensor_data is best effort and takes reliable "
          "and best-effort publishers", choices=QOS_CHOICES, read_only=True),
    Param(
        "input_depth",
        1,
        "Queue depth of the input subscriptions; 1 drops stale frames instead of queueing them",
        min=1,
        max=100,
        read_only=True,
    ),
    Param(
        "max_image_pixels",
        MAX_IMAGE_PIXELS,
        "Largest width*height of an input image; larger ones (compressed ones judged by their header, "
        "before decoding) are dropped as malformed",
        min=1,
    ),
)
# Nodes taking raw images from another process: with Fast DDS's defaults a best-effort subscription loses most
# 3 MB images (one lost UDP fragment loses the image), reliable has them resent; still depth 1.
RAW_INPUT_PARAMS = (
    replace(INPUT_PARAMS[0], default="reliable", description="QoS of the input subscriptions; reliable because a "
            "best-effort one loses most raw images sent from another process (one lost UDP fragment loses the "
            "image); sensor_data suits compressed or same-process input"),
    *INPUT_PARAMS[1:],
)
COMMON_PARAMS = (
    Param("diagnostics_period_s", 1.0, "Period of the /diagnostics status", min=0.1, max=60.0, read_only=True),
)
STAMP_PARAMS = (  # nodes that match inputs by stamp or keep state across frames
    Param("sync_slop_s", 0.02, "Largest stamp difference between matched inputs", min=0.0, max=1.0, read_only=True),
    Param("optional_input_timeout_s", 2.0, "After this long without a message on an optional input (CameraInfo, "
          "depth), images are processed without it (WARN on /diagnostics) until it is back; 0 = wait for it",
          min=0.0, max=3600.0),
    Param("time_jump_s", 1.0, "A stamp this much older than the newest on its topic is a jump back in time (a "
          "looping bag, a restarted simulation): matching and tracking start afresh", min=0.001, max=1e6),
)


RUNTIME_PARAMS = (  # nodes that run a network through the shared runtime
    Param("backend", "auto", "Inference backend; auto measures the available ones on this machine once and "
          "keeps the fastest", choices=BACKENDS, read_only=True),
    Param("device", "", "cpu, cuda or cuda:N; empty = the GPU when there is one", read_only=True),
    Param("precision", "auto", "auto: fp16 on a GPU; on the CPU int8 where the model kind's held-out accuracy "
          "holds in int8 (lanes), else fp32. bf16 needs AMX/AVX-512 BF16 or CUDA, fp16 CUDA, int8 the CPU",
          choices=PRECISIONS, read_only=True),
    Param("threads", 0, "CPU threads of the network, for this node only (0 = the backend's default)", min=0,
          max=256, read_only=True),
)


def boundary_params(settings: type) -> tuple[Param, ...]:
    """The boundary patch refinement parameters of a segmentation node whose settings dataclass has
    `refine_boundaries` and `boundary_nms` (the refiner runs on the node's runtime parameters)."""
    return (
        Param.of(settings, "refine_boundaries", "Refine every instance mask along its boundary with a boundary patch "
                 "refiner (BPR); its time per frame and per instance go to /diagnostics", read_only=True),
        Param("boundary_model", "", "Boundary refiner weights (.safetensors from refine-train bpr); empty = the "
              "shipped one for this node", read_only=True),
        Param.of(settings, "boundary_nms", "IoU above which a boundary patch proposal is dropped for a better one "
                 "(higher: more, overlapping patches, averaged)", min=0.0, max=0.99),
    )

