"""bag_player: plays a bag into the running graph with /clock, and records the graph's outputs.

Two modes:
- realtime: messages go out at their recorded pace (times `rate`). A node that cannot keep up drops
  frames (its input queue holds one) and they are counted: the honest real-time figure.
- lossless: after each camera frame the player waits until the first recorded topic (the lanes) has
  published the result stamped like it (or `frame_timeout_s`, counted), so every frame is processed.

Messages are published as the recorded bytes (no decoding), /clock follows each message's recorded
time, so nodes on use_sim_time see the recording's time. Outputs are recorded with their receipt time
into `result_bag`; `timing.json` beside them holds, per camera frame, the wall time it was sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from refine_perception.bags.frames import (
    CAMERA_INFO_TYPE,
    Stamp,
    camera_topics,
    cdr_stamp,
    stamp_of,
    write_timing,
)
from refine_perception.bags.reader import BagError, BagReader
from refine_perception.bags.writer import STORAGES, BagWriter
from refine_perception.ros.messages import import_message_type
from refine_perception.ros.node_base import PerceptionNode, node_main
from refine_perception.ros.params import QOS_CHOICES, Param, qos_from_name

INFO_GRACE_S = 5.0
SETTLE_S = 1.0
RECORD_DEFAULT = ("lanes:refine_msgs/msg/LaneArray,lane_markers:visualization_msgs/msg/MarkerArray,"
                  "/diagnostics:diagnostic_msgs/msg/DiagnosticArray")


def parse_record(spec: str) -> list[tuple[str, str]]:
    """'topic:pkg/msg/Type,...' -> [(topic, type)]."""
    pairs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        topic, _, msgtype = item.partition(":")
        if not topic or not msgtype:
            raise ValueError(f"record entry {item!r} is not topic:pkg/msg/Type")
        pairs.append((topic, msgtype))
    return pairs


def parse_remaps(spec: str) -> dict[str, str]:
    """'/from:=/to,...' -> {from: to}."""
    remaps = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise ValueError(f"remap {item!r} is not /from:=/to")
        remaps[source] = target
    return remaps


def _stamped(data: bytes, stamp: Stamp) -> bool:
    """Whether the serialised message has a header stamped `stamp`."""
    try:
        return cdr_stamp(data) == stamp
    except BagError:
        return False


class BagPlayer(PerceptionNode):
    TASK = "bag player"
    DEFAULT_NAME = "bag_player"
    PARAMS = (
        Param("bag", "", "The bag to play (rosbag2 folder, .mcap or .db3); required", read_only=True),
        Param("mode", "lossless", "realtime: recorded pace, late frames dropped; lossless: each frame waits "
              "for its results", choices=("realtime", "lossless"), read_only=True),
        Param("rate", 1.0, "Playback speed in realtime mode (2 = twice as fast)", min=0.01, max=100.0,
              read_only=True),
        Param("image_topic", "", "The bag's camera topic (the frames); empty = its only image topic",
              read_only=True),
        Param("remap", "", "Rename bag topics on playback: /from:=/to,...", read_only=True),
        Param("record", RECORD_DEFAULT, "Outputs to record, topic:type,...; lossless mode waits for the "
              "first (it must have a header)", read_only=True),
        Param("result_bag", "", "Write the recorded outputs here (empty: record nothing)", read_only=True),
        Param("storage", "mcap", "Storage of the result bag", choices=tuple(STORAGES), read_only=True),
        Param("output_qos", "reliable", "QoS of the played topics", choices=QOS_CHOICES, read_only=True),
        Param("frame_timeout_s", 10.0, "Lossless mode: longest wait for a frame's results (counted)",
              min=0.01, max=600.0, read_only=True),
        Param("wait_for_subscribers_s", 30.0, "Wait this long for the camera topic's subscribers and the "
              "recorded topics' publishers before playing", min=0.0, max=600.0, read_only=True),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.DEFAULT_NAME, **kwargs)
        p = self.params
        if not p.bag:
            raise ValueError("parameter bag is required")
        self.reader = BagReader(p.bag)
        self.remaps = parse_remaps(p.remap)
        self.record = parse_record(p.record)
        self.finished = threading.Event()
        self.play_error = ""
        self.topics: dict[str, str] = {}
        self.frames_sent: list[tuple[Stamp, int]] = []  # (stamp, wall ns sent)
        self.timeouts = 0
        self.results = {topic: 0 for topic, _ in self.record}
        self._wait_topic = self.record[0][0] if self.record else ""
        self._lock = threading.Lock()
        self._received: set[Stamp] = set()  # stamps of the results on the first recorded topic
        self._arrived = threading.Condition(self._lock)
        self._writer = BagWriter(p.result_bag, p.storage, overwrite=True) if p.result_bag else None
        self._qos = qos_from_name(p.output_qos, 1)
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._bag_pubs: dict[str, Any] = {}
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msgtype in self.record:
            self.create_subscription(import_message_type(msgtype), topic,
                                     lambda data, t=topic, m=msgtype: self._on_result(t, m, data), reliable, raw=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="bag_player", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------ results

    def _on_result(self, topic: str, msgtype: str, data: bytes) -> None:
        received_ns = time.time_ns()
        stamp = None
        if topic == self._wait_topic:
            try:
                stamp = cdr_stamp(data)
            except BagError as error:
                self.counters.count_dropped("malformed_result")
                self.get_logger().warning(f"result on {topic}: {error}", throttle_duration_sec=1.0)
                return
        with self._arrived:
            if self._writer is not None:
                self._writer.write_raw(self.resolve_topic_name(topic), msgtype, data, received_ns)
            self.results[topic] += 1
            if stamp is not None:
                self._received.add(stamp)
                self._arrived.notify_all()

    def _wait_for_results(self, stamp: Stamp, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while stamp not in self._received:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return False
                self._arrived.wait(min(left, 0.1))
        return True

    # ------------------------------------------------------------------------------------ playing

    def _publisher(self, topic: str, msgtype: str) -> Any:
        name = self.remaps.get(topic, topic)
        if name not in self._bag_pubs:
            self._bag_pubs[name] = self.create_publisher(import_message_type(msgtype), name, self._qos)
        return self._bag_pubs[name]

    def _wait_for_graph(self, image_topic: str) -> None:
        """Until the camera topic has a subscriber and the first recorded topic a publisher; then up to
        INFO_GRACE_S more for the CameraInfo topics' subscribers: a detector that missed the first
        CameraInfo would never pair the first image (and a lossless replay would wait for its lanes in
        vain), while a graph that does not use CameraInfo should not hold the replay up for long."""
        deadline = time.monotonic() + self.params.wait_for_subscribers_s
        image_pub = self._publisher(image_topic, self.topics[image_topic])
        info_pubs = [self._publisher(topic, msgtype) for topic, msgtype in self.topics.items()
                     if msgtype == CAMERA_INFO_TYPE]
        ready_at = None
        while time.monotonic() < deadline and not self._stop.is_set():
            if ready_at is None and image_pub.get_subscription_count() > 0 and all(
                    self.count_publishers(topic) > 0 for topic, _ in self.record[:1]):
                ready_at = time.monotonic()
            if ready_at is not None and (all(pub.get_subscription_count() > 0 for pub in info_pubs)
                                         or time.monotonic() > ready_at + INFO_GRACE_S):
                # a writer counts a subscription matched before the reader has matched the writer; a
                # message sent in between is lost (volatile durability), so give discovery time to settle
                time.sleep(SETTLE_S)
                return
            time.sleep(0.02)
        self.get_logger().warning("playing although the graph is not all there (wait_for_subscribers_s passed)")

    def _play(self) -> None:
        p = self.params
        try:
            self.topics = self.reader.topics()
            image_topic, _ = camera_topics(self.topics, p.image_topic or None, None)
            for topic, msgtype in self.topics.items():
                self._publisher(topic, msgtype)
            self._wait_for_graph(image_topic)
            self.get_logger().info(f"playing {p.bag} ({p.mode}), frames on {image_topic}")
            wall_start = time.monotonic()
            bag_start: int | None = None
            lossless = p.mode == "lossless" and bool(self.record)
            pending: Stamp | None = None  # lossless: the frame whose result is awaited
            for message in self.reader.messages():
                if self._stop.is_set():
                    break
                if lossless and pending is not None and not _stamped(message.data, pending):
                    # waited for at the first message of another stamp, so that the frame's own messages
                    # logged after its image (a CameraInfo) go out first, and the next frame's after the
                    # result: the node's depth-1 queues would let a newer CameraInfo replace an unread one
                    self._await(pending)
                    pending = None
                if bag_start is None:
                    bag_start = message.time_ns
                if not lossless:
                    delay = wall_start + (message.time_ns - bag_start) / 1e9 / p.rate - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                try:
                    message.decode()  # a malformed message would break the subscribers' executors
                except BagError as error:
                    self.counters.count_dropped("undecodable")
                    self.get_logger().error(str(error), throttle_duration_sec=1.0)
                    continue
                self._clock_pub.publish(Clock(clock=stamp_of(message.time_ns)))
                self._bag_pubs[self.remaps.get(message.topic, message.topic)].publish(message.data)
                if message.topic != image_topic:
                    continue
                stamp = cdr_stamp(message.data)
                with self._lock:
                    self.frames_sent.append((stamp, time.time_ns()))
                self.counters.count_processed()
                pending = stamp
            if lossless and pending is not None:
                self._await(pending)
            elif self.frames_sent:  # let the last results arrive
                self._wait_for_results(self.frames_sent[-1][0], min(p.frame_timeout_s, 2.0))
            for error in self.reader.errors:
                self.get_logger().error(str(error))
        except Exception as error:  # noqa: BLE001 - the run must end with the reason, not hang
            self.play_error = f"cannot play {p.bag}: {type(error).__name__}: {error}"
            self.get_logger().error(self.play_error)
        finally:
            self.finished.set()

    def _await(self, stamp: Stamp) -> None:
        if not self._wait_for_results(stamp, self.params.frame_timeout_s):
            self.timeouts += 1
            self.counters.count_dropped("result_timeout")

    # ------------------------------------------------------------------------------------ the end

    def errors(self) -> list[str]:
        return [str(e) for e in self.reader.errors] + ([self.play_error] if self.play_error else [])

    def report(self) -> dict[str, Any]:
        return {"frames_played": len(self.frames_sent), "results": dict(self.results), "timeouts": self.timeouts,
                "result_bag": self.params.result_bag, "errors": self.errors()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        if self.params.result_bag:
            with self._lock:
                sent = list(self.frames_sent)
            write_timing(self.params.result_bag, self.params.mode, self.params.bag, sent, self.params.rate,
                         self.timeouts, self.errors())
        super().stop()


def main(args: list[str] | None = None) -> int:
    return node_main(BagPlayer, args)
