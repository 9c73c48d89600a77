"""What every refine_perception node shares: typed parameters, QoS from parameters, diagnostics,
frame handling that drops stale frames instead of queueing them, and a clean shutdown.

The jobs live in their own modules (`params`, `frame_worker`, `stamped_inputs`, `diagnostics`); the base
class here wires them into a node and is what node classes see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rclpy.node import Node
from rclpy.qos import QoSProfile

from refine_perception.core.stats import FrameCounters, LatencyWindow, RateMeter
from refine_perception.ros.diagnostics import DiagnosticsPublisher, summarize
from refine_perception.ros.frame_worker import LatestFrameWorker
from refine_perception.ros.params import COMMON_PARAMS, Param, declare_params, qos_from_name
from refine_perception.ros.stamped_inputs import StampedInputs


class PerceptionNode(Node):
    """Base class: declares `PARAMS`, publishes /diagnostics, runs frame handlers off the executor."""

    PARAMS: ClassVar[tuple[Param, ...]] = ()
    TASK: ClassVar[str] = ""
    DEFAULT_NAME: ClassVar[str] = ""

    @classmethod
    def declared_params(cls) -> tuple[Param, ...]:
        """Every parameter the node declares, the common ones first: what its params file and replay start from."""
        return (*COMMON_PARAMS, *cls.PARAMS)

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.node_name = self.get_name()  # still readable after the node is destroyed
        self.params = declare_params(self, self.declared_params())
        self.counters = FrameCounters()
        self.input_rate = RateMeter()
        self.latency = LatencyWindow()
        self.backend = ""
        self.model_error = ""  # set by nodes whose model could not be opened: status ERROR, frames dropped
        self.stamped_inputs = StampedInputs(self)
        self._workers: list[LatestFrameWorker] = []
        self._diagnostics = DiagnosticsPublisher(self)

    def input_qos(self) -> QoSProfile:
        return qos_from_name(self.params.input_qos, self.params.input_depth)

    # --- frames ------------------------------------------------------------------------------------

    def subscribe_frames(self, msg_type: type, topic: str, handler: Callable[[Any], None]) -> None:
        """Subscribe `handler` to `topic`. The subscription callback only keeps the newest message; a
        worker thread runs the handler, so a slow handler drops (and counts) stale frames instead of
        building a backlog, and a bad frame is logged and counted instead of stopping the node."""
        worker = self._start_worker(handler, topic)

        def offer(msg: Any) -> None:
            self.stamped_inputs.watch(topic, msg)
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
        worker = self._start_worker(lambda matched: handler(*matched), inputs[0][1])
        self.stamped_inputs.subscribe_matched(inputs, worker.offer, optional, queue_size)

    def _start_worker(self, handler: Callable[[Any], None], topic: str) -> LatestFrameWorker:
        worker = LatestFrameWorker(self, handler, topic)
        self._workers.append(worker)
        return worker

    def reset_state(self) -> None:
        """Forget what was carried from frame to frame (tracks); called on the frame worker's thread before
        the first frame after a time jump. Nodes with such state override it."""

    def unmatched(self) -> int:
        """Messages our stamp synchronisers dropped without a partner (message_filters does not say)."""
        return self.stamped_inputs.unmatched()

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
        """Level, message and values of the node's /diagnostics status."""
        return summarize(
            self.counters,
            self.input_rate,
            self.latency,
            backend=self.backend,
            time_jumps=self.stamped_inputs.time_jumps,
            missing_inputs=self.stamped_inputs.missing,
            extra=self.diagnostic_values(),
            model_error=self.model_error,
        )

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
