"""topic_monitor: prints what flows through the graph — per topic the rate, bandwidth and age of the
messages (receipt time minus header stamp) — without deserialising the payloads."""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rclpy.qos import qos_profile_sensor_data

from refine_perception.core.stats import LatencyWindow, RateMeter
from refine_perception.ros.messages import import_message_type
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import Param

IGNORED = ("/rosout", "/parameter_events")


@dataclass
class TopicStats:
    type_name: str
    stamped: bool
    messages: int = 0
    rate: RateMeter = field(default_factory=RateMeter)
    bandwidth_window: deque[tuple[float, int]] = field(default_factory=deque)
    age: LatencyWindow = field(default_factory=LatencyWindow)

    def add(self, now: float, size: int) -> None:
        self.messages += 1
        self.rate.tick(now)
        self.bandwidth_window.append((now, size))
        cutoff = now - self.rate.window_s
        while self.bandwidth_window and self.bandwidth_window[0][0] < cutoff:
            self.bandwidth_window.popleft()

    def summary(self, now: float | None = None) -> dict[str, Any]:
        """Figures over the last window before `now`, or before the last message when now is None."""
        if now is None:
            now = self.bandwidth_window[-1][0] if self.bandwidth_window else 0.0
        span = self.rate.window_s
        out: dict[str, Any] = {
            "type": self.type_name,
            "messages": self.messages,
            "rate_hz": round(self.rate.rate(now), 2),
            "mb_per_s": round(sum(size for t, size in self.bandwidth_window if now - t <= span) / span / 1e6, 3),
        }
        if len(self.age):
            out["age_ms"] = {k: round(v, 2) for k, v in self.age.summary_ms().items()}
        return out


def header_stamp_ns(serialized: bytes) -> int | None:
    """The header stamp of a serialised message whose first field is std_msgs/Header (CDR: a 4-byte
    encapsulation, then int32 sec and uint32 nanosec), or None if the bytes are too short."""
    if len(serialized) < 12:
        return None
    little = serialized[1] & 1
    sec, nanosec = struct.unpack("<iI" if little else ">iI", serialized[4:12])
    return sec * 1_000_000_000 + nanosec


class TopicMonitor(PerceptionNode):
    TASK = "topic monitor"
    DEFAULT_NAME = "topic_monitor"
    PARAMS = (
        Param("topics", "", "Comma-separated topics to watch; empty = every topic except /rosout, /parameter_events",
              read_only=True),
        Param("report_period_s", 2.0, "How often to log the table", min=0.1, max=3600.0),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        self.stats: dict[str, TopicStats] = {}
        self._wanted = [t.strip() for t in self.params.topics.split(",") if t.strip()]
        self._discover()
        self.create_timer(0.5, self._discover)
        self.create_timer(self.params.report_period_s, self._report)

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self.stats or topic in IGNORED or (self._wanted and topic not in self._wanted):
                continue
            try:
                msg_type = import_message_type(types[0])
            except ValueError as error:
                self.get_logger().warning(f"not watching {topic}: {error}", once=True)
                continue
            fields = msg_type.get_fields_and_field_types()
            stamped = next(iter(fields.values()), None) == "std_msgs/Header"
            self.stats[topic] = TopicStats(types[0], stamped)
            self.create_subscription(
                msg_type, topic, lambda data, t=topic: self._on_message(t, data), qos_profile_sensor_data, raw=True
            )

    def _on_message(self, topic: str, data: bytes) -> None:
        stats = self.stats[topic]
        stats.add(time.monotonic(), len(data))
        if stats.stamped:
            stamp = header_stamp_ns(data)
            if stamp:
                stats.age.add((self.get_clock().now().nanoseconds - stamp) / 1e9)

    def topic_figures(self, live: bool = False) -> dict[str, dict[str, Any]]:
        """Per-topic figures: over the last window (live), or over each topic's last window of traffic."""
        now = time.monotonic() if live else None
        return {topic: stats.summary(now) for topic, stats in sorted(self.stats.items())}

    def report(self) -> dict[str, Any]:
        return {"topics": self.topic_figures()}

    def _report(self) -> None:
        lines = []
        for topic, s in self.topic_figures(live=True).items():
            age = s.get("age_ms")
            age_text = f"  age p50 {age['p50']:7.1f} ms" if age else ""
            lines.append(f"  {topic:40s} {s['rate_hz']:7.2f} Hz {s['mb_per_s']:8.3f} MB/s {s['messages']:7d} msgs{age_text}")
        self.get_logger().info("what flows:\n" + ("\n".join(lines) if lines else "  (no topics yet)"))


def main(args: list[str] | None = None) -> int:
    return node_main(TopicMonitor, args)
