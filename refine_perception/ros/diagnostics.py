"""A node's status on /diagnostics: the level, message and key/values built from its frame figures, and
the timer that publishes them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from refine_perception.core.stats import FrameCounters, LatencyWindow, RateMeter

if TYPE_CHECKING:
    from refine_perception.ros.node_base import PerceptionNode

OK, WARN, ERROR = 0, 1, 2  # DiagnosticStatus levels (the message constants are bytes)


def summarize(
    counters: FrameCounters,
    input_rate: RateMeter,
    latency: LatencyWindow,
    *,
    backend: str,
    time_jumps: int,
    missing_inputs: Mapping[str, str],
    extra: Mapping[str, str],
    model_error: str,
) -> tuple[int, str, dict[str, str]]:
    """Level, message and values of a node's status. ERROR while its model is unavailable; WARN when
    frames failed or optional inputs are missing (`missing_inputs`: topic -> what the output lacks)."""
    now = time.monotonic()
    rate = input_rate.rate(now)
    latency_ms = latency.summary_ms()
    counts = counters.as_dict()
    values = {"input_rate_hz": f"{rate:.2f}", **{k: str(v) for k, v in counts.items()}}
    values.update({f"latency_{k}_ms": f"{v:.2f}" for k, v in latency_ms.items()})
    if backend:
        values["backend"] = backend
    if time_jumps:
        values["time_jumps"] = str(time_jumps)
    missing = dict(missing_inputs)  # a copy: the executor thread may change it meanwhile
    if missing:
        values["missing_inputs"] = ", ".join(missing)
    values.update(extra)
    if model_error:
        values["model_error"] = model_error
        return ERROR, model_error, values
    level = OK
    message = f"{rate:.1f} Hz in"
    if latency_ms:
        message += f", latency p95 {latency_ms['p95']:.1f} ms"
    if counts["dropped"]:
        message += f", {counts['dropped']} dropped"
    failures = counts.get("dropped_malformed", 0) + counts.get("dropped_error", 0)
    if failures:
        level = WARN
    if missing:
        level = WARN
        message += "; " + "; ".join(f"no {topic}: {lacks}" for topic, lacks in missing.items())
    return level, message, values


class DiagnosticsPublisher:
    """Publishes `node.status_summary()` on /diagnostics every `diagnostics_period_s`."""

    def __init__(self, node: PerceptionNode) -> None:
        self._node = node
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(node.params.diagnostics_period_s, self.publish)

    def publish(self) -> None:
        node = self._node
        level, message, values = node.status_summary()
        status = DiagnosticStatus(
            level=bytes([level]),
            name=f"{node.get_fully_qualified_name()}: {node.TASK or type(node).__name__}",
            message=message,
            hardware_id=node.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = node.get_clock().now().to_msg()
        self._pub.publish(msg)
