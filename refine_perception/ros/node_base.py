"""What every refine_perception node shares: typed parameters, QoS from parameters, diagnostics,
frame handling that drops stale frames instead of queueing them, and a clean shutdown.

A node lists its parameters once, as `Param` entries; they are declared with descriptors (ranges,
choices, read-only) so `ros2 param describe` documents them, and `config/<node>.yaml` must hold the same
defaults (a test checks it).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from types import SimpleNamespace
from typing import Any, ClassVar, TypeVar

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
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

from refine_perception.core.image_codec import MAX_IMAGE_PIXELS, ImageFormatError
from refine_perception.core.stats import FrameCounters, LatencyWindow, RateMeter
from refine_perception.core.sync import NANOSECONDS, ApproximateTimeSync, StampError, header_stamp_ns

ParamValue = bool | int | float | str | list[str] | list[float] | list[int]

QOS_CHOICES = ("sensor_data", "reliable", "system_default")
_OK, _WARN, _ERROR = 0, 1, 2  # DiagnosticStatus levels (the message constants are bytes)


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


T = TypeVar("T")


def settings_from_params(cls: type[T], params: Any) -> T:
    """Dataclass `cls` from an object or mapping with (at least) its field names, e.g. a node's parameters
    (so the offline pipelines take the same names); each value is cast to its default's type."""
    get = params.get if isinstance(params, dict) else lambda name, default: getattr(params, name, default)
    return cls(**{f.name: type(f.default)(get(f.name, f.default)) for f in fields(cls)})


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
    Param("input_qos", "sensor_data", "QoS of the input subscriptions", choices=QOS_CHOICES, read_only=True),
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


@dataclass
class _Matching:
    """One set of stamp-matched inputs: the synchroniser, the topics (the image first), what each optional
    one adds, since when an image waits for partners, the newest image stamp, and per absent input its
    latest message, kept aside until its stamp fits an image again."""

    sync: ApproximateTimeSync
    names: list[str]
    optional: dict[str, str]
    waiting_since: float | None = None
    newest_image: int | None = None
    parked: dict[int, tuple[int, Any]] = field(default_factory=dict)

    def reset(self) -> None:
        self.sync.reset()
        self.waiting_since = self.newest_image = None
        self.parked.clear()


class PerceptionNode(Node):
    """Base class: declares `PARAMS`, publishes /diagnostics, runs frame handlers off the executor."""

    PARAMS: ClassVar[tuple[Param, ...]] = ()
    TASK: ClassVar[str] = ""
    DEFAULT_NAME: ClassVar[str] = ""

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.node_name = self.get_name()  # still readable after the node is destroyed
        self._param_specs = {p.name: p for p in (*COMMON_PARAMS, *self.PARAMS)}
        self.params = SimpleNamespace()
        for spec in self._param_specs.values():
            value = self.declare_parameter(spec.name, spec.default, spec.descriptor()).value
            problem = spec.check(value)
            if problem:
                raise ValueError(f"{self.get_name()}: {problem}")
            setattr(self.params, spec.name, value)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.counters = FrameCounters()
        self.input_rate = RateMeter()
        self.latency = LatencyWindow()
        self.backend = ""
        self.model_error = ""  # set by nodes whose model could not be opened: status ERROR, frames dropped
        self._workers: list[_LatestFrameWorker] = []
        self._matchings: list[_Matching] = []
        self._newest_stamp: dict[str, int] = {}  # per input topic, to see time jump back
        self.time_jumps = 0
        self.timeline = 0  # counts the jumps back in time; frames carry the one they arrived in
        self.missing_inputs: dict[str, str] = {}  # optional input topic -> what the output lacks without it
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self.params.diagnostics_period_s, self.publish_diagnostics)

    # --- parameters -------------------------------------------------------------------------------

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            spec = self._param_specs.get(param.name)
            problem = spec.check(param.value) if spec else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for param in params:
            if param.name in self._param_specs:
                setattr(self.params, param.name, param.value)
        return SetParametersResult(successful=True)

    def input_qos(self) -> QoSProfile:
        return qos_from_name(self.params.input_qos, self.params.input_depth)

    # --- frames ------------------------------------------------------------------------------------

    def subscribe_frames(self, msg_type: type, topic: str, handler: Callable[[Any], None]) -> None:
        """Subscribe `handler` to `topic`. The subscription callback only keeps the newest message; a
        worker thread runs the handler, so a slow handler drops (and counts) stale frames instead of
        building a backlog, and a bad frame is logged and counted instead of stopping the node."""
        worker = _LatestFrameWorker(self, handler, topic)
        self._workers.append(worker)

        def offer(msg: Any) -> None:
            try:
                self._watch_stamp(topic, header_stamp_ns(msg))
            except StampError:  # only a stamp-matched input needs a stamp
                pass
            worker.offer(msg)

        self.create_subscription(msg_type, topic, offer, self.input_qos())

    def subscribe_synced_frames(self, inputs: Sequence[tuple[type, str]], handler: Callable[..., None],
                                optional: dict[str, str], queue_size: int = 10) -> None:
        """Like `subscribe_frames`, for messages of several topics matched by stamp (approximate time,
        `sync_slop_s`): an image and its CameraInfo, say, or also a depth image. `handler` gets one of
        each, in order. Unmatched messages are dropped by the synchroniser and counted there; matched
        sets go through the newest-frame worker.

        The first input is required; `optional` maps the topics of the others to what the output lacks
        without them. One that has kept an image waiting for `optional_input_timeout_s` (silent, or on
        another clock) stops holding the images back: they are handled with None in its place and
        /diagnostics says so (WARN) until a message of it fits an image again.
        Our `core.sync.ApproximateTimeSync` keeps message_filters' contract and adds that, hence it is
        used rather than message_filters (which is not on PyPI anyway).
        """
        topic = inputs[0][1]
        worker = _LatestFrameWorker(self, lambda matched: handler(*matched), topic)
        self._workers.append(worker)
        qos = self.input_qos()
        sync = ApproximateTimeSync(len(inputs), queue_size, self.params.sync_slop_s,
                                   lambda *messages: worker.offer(messages))
        matching = _Matching(sync, [name for _, name in inputs], optional)
        self._matchings.append(matching)
        for index, (kind, name) in enumerate(inputs):
            self.create_subscription(kind, name, partial(self._sync_input, matching, index), qos)

    def _sync_input(self, matching: _Matching, index: int, msg: Any) -> None:
        sync, topic = matching.sync, matching.names[index]
        try:
            stamp = header_stamp_ns(msg)
        except StampError as error:
            self.counters.count_dropped("malformed")
            self.get_logger().warning(f"dropped a message on {topic}: {error}", throttle_duration_sec=1.0)
            return
        self._watch_stamp(topic, stamp)
        now = time.monotonic()
        if index == 0:
            matching.newest_image = stamp
            self._leave_out_silent_inputs(matching, now)
            for other, (parked_stamp, parked) in list(matching.parked.items()):
                if abs(parked_stamp - stamp) <= sync.slop_ns:
                    self._bring_back(matching, other, parked)
        elif sync.is_absent(index):
            matching.parked[index] = (stamp, msg)
            if matching.newest_image is None or abs(stamp - matching.newest_image) > sync.slop_ns:
                return
            self._bring_back(matching, index, msg)
            return
        if sync.add(index, msg):
            matching.waiting_since = None
        elif index == 0 and matching.waiting_since is None:
            matching.waiting_since = now

    def _bring_back(self, matching: _Matching, index: int, msg: Any) -> None:
        """An absent input whose message fits an image again takes part in matching from now on."""
        topic = matching.names[index]
        del matching.parked[index]
        matching.sync.set_absent(index, False)
        self.missing_inputs.pop(topic, None)
        self.get_logger().info(f"{topic} matches the images again", throttle_duration_sec=5.0)
        if matching.sync.add(index, msg):
            matching.waiting_since = None

    def _leave_out_silent_inputs(self, matching: _Matching, now: float) -> None:
        """Leave out each optional input that has kept an image waiting for `optional_input_timeout_s`:
        silent, or stamped so that it never fits (another clock). Counting from a waiting image, not the
        wall clock, keeps a paused stream (a paused bag, a player waiting for results) from looking like
        a silent partner, and frees a slow camera's images from its second frame on."""
        timeout = self.params.optional_input_timeout_s
        since = matching.waiting_since
        if timeout <= 0 or since is None or now - since <= timeout:
            return
        for index in matching.sync.missing_partners(0):
            topic = matching.names[index]
            matching.sync.set_absent(index, True)
            self.missing_inputs[topic] = matching.optional[topic]
            self.get_logger().warning(f"nothing on {topic} fits the images for {now - since:.1f} s: they are "
                                      f"processed without it ({matching.optional[topic]})",
                                      throttle_duration_sec=5.0)

    def _watch_stamp(self, topic: str, stamp: int) -> None:
        """Notice a jump back in time on `topic` (a looping bag, a restarted simulation): the stamp
        synchronisers would discard every later message as late and the tracker would link frames of
        two timelines, so both start afresh, as ROS nodes do on a clock reset; logged and counted."""
        threshold = getattr(self.params, "time_jump_s", None)
        if threshold is None:
            return
        newest = self._newest_stamp.get(topic)
        if newest is not None and newest - stamp > threshold * NANOSECONDS:
            self.time_jumps += 1
            self.timeline += 1
            self.get_logger().warning(f"time jumped back on {topic}: {stamp / NANOSECONDS:.3f} s after "
                                      f"{newest / NANOSECONDS:.3f} s; stamp matching and tracking start afresh")
            self._newest_stamp.clear()
            for matching in self._matchings:
                matching.reset()
        self._newest_stamp[topic] = max(stamp, self._newest_stamp.get(topic, stamp))

    def reset_state(self) -> None:
        """Forget what was carried from frame to frame (tracks); called on the frame worker's thread before
        the first frame after a time jump. Nodes with such state override it."""

    def unmatched(self) -> int:
        """Messages our stamp synchronisers dropped without a partner (message_filters does not say)."""
        return sum(sum(matching.sync.dropped) for matching in self._matchings)

    def frame_failed(self, topic: str, error: BaseException) -> None:
        """Count and log a frame the handler could not process; the node goes on with the next one."""
        if isinstance(error, ImageFormatError):
            self.counters.count_dropped("malformed")
            self.get_logger().warning(f"dropped malformed frame on {topic}: {error}", throttle_duration_sec=1.0)
        else:
            self.counters.count_dropped("error")
            self.get_logger().error(
                f"failed on a frame from {topic}: {error!r}\n{''.join(traceback.format_exception(error))}",
                throttle_duration_sec=1.0,
            )

    def input_problems(self, problems: Sequence[str]) -> None:
        """Count and log the optional inputs a frame's result was made without because they were bad (a
        CameraInfo with K all zeros, a depth image of another size): malformed messages, though the
        image itself was processed."""
        for problem in problems:
            self.counters.count_dropped("malformed")
            self.get_logger().warning(f"malformed input: {problem}", throttle_duration_sec=1.0)

    # --- diagnostics -------------------------------------------------------------------------------

    def diagnostic_values(self) -> dict[str, str]:
        """Extra key/values for /diagnostics; subclasses add theirs."""
        return {}

    def report(self) -> dict[str, Any]:
        """Figures of the whole run beyond the frame counters, for the command line's summary."""
        return {}

    def status_summary(self) -> tuple[int, str, dict[str, str]]:
        now = time.monotonic()
        rate = self.input_rate.rate(now)
        latency = self.latency.summary_ms()
        counts = self.counters.as_dict()
        values = {"input_rate_hz": f"{rate:.2f}", **{k: str(v) for k, v in counts.items()}}
        values.update({f"latency_{k}_ms": f"{v:.2f}" for k, v in latency.items()})
        if self.backend:
            values["backend"] = self.backend
        if self.time_jumps:
            values["time_jumps"] = str(self.time_jumps)
        missing = dict(self.missing_inputs)
        if missing:
            values["missing_inputs"] = ", ".join(missing)
        values.update(self.diagnostic_values())
        if self.model_error:
            values["model_error"] = self.model_error
            return _ERROR, self.model_error, values
        level = _OK
        message = f"{rate:.1f} Hz in"
        if latency:
            message += f", latency p95 {latency['p95']:.1f} ms"
        if counts["dropped"]:
            message += f", {counts['dropped']} dropped"
        failures = counts.get("dropped_malformed", 0) + counts.get("dropped_error", 0)
        if failures:
            level = _WARN
        if missing:
            level = _WARN
            message += "; " + "; ".join(f"no {topic}: {lacks}" for topic, lacks in missing.items())
        return level, message, values

    def publish_diagnostics(self) -> None:
        level, message, values = self.status_summary()
        status = DiagnosticStatus(
            level=bytes([level]),
            name=f"{self.get_fully_qualified_name()}: {self.TASK or type(self).__name__}",
            message=message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    # --- lifetime ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the node's own threads (no more publishing); the executor can then be shut down."""
        for worker in self._workers:
            worker.stop()
        self._workers.clear()

    def close(self) -> None:
        """Stop the node's threads and destroy it."""
        self.stop()
        self.destroy_node()


class _LatestFrameWorker:
    """A one-slot mailbox plus a thread: offer() replaces an unprocessed message (counted as dropped)."""

    def __init__(self, node: PerceptionNode, handler: Callable[[Any], None], topic: str) -> None:
        self._node = node
        self._handler = handler
        self._topic = topic
        self._slot: tuple[Any, float, int] | None = None
        self._timeline = 0  # of the last frame handled: a frame of a newer one resets the node's state first
        self._cond = threading.Condition()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"frames:{topic}", daemon=True)
        self._thread.start()

    def offer(self, msg: Any) -> None:
        now = time.monotonic()
        self._node.counters.count_received()
        self._node.input_rate.tick(now)
        with self._cond:
            if self._slot is not None:
                self._node.counters.count_dropped("stale")
            self._slot = (msg, time.perf_counter(), self._node.timeline)
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._running and self._slot is None:
                    self._cond.wait()
                if not self._running:
                    return
                msg, received_at, timeline = self._slot
                self._slot = None
            if self._node.model_error:  # nothing to run the frame through
                self._node.counters.count_dropped("no_model")
                continue
            if timeline != self._timeline:
                self._timeline = timeline
                self._node.reset_state()
            try:
                self._handler(msg)
            except Exception as error:  # noqa: BLE001 - a bad frame must never stop the node
                self._node.frame_failed(self._topic, error)
                continue
            self._node.counters.count_processed()
            self._node.latency.add(time.perf_counter() - received_at)

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join(timeout=5.0)


def node_main(node_class: type[PerceptionNode], args: list[str] | None = None) -> int:
    """Entry point of a node executable: ROS arguments come from the command line, as launch_ros gives them."""
    import sys

    try:
        from refine_perception.ros.graph_runner import NodeStartError, run_nodes

        run_nodes([(node_class, None)], args=args)
    except KeyboardInterrupt:  # Ctrl-C before run_nodes handles the signals: nothing runs yet to stop
        return 130
    except NodeStartError as error:
        print(error, file=sys.stderr)
        return 1
    return 0
