"""What a node tracks of its inputs' stamps: sets of topics matched by stamp (an image with its CameraInfo
and depth), optional inputs left out while they fit no image, and jumps back in time, after which matching
and the node's frame-to-frame state start afresh."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from refine_perception.core.sync import NANOSECONDS, ApproximateTimeSync, StampError, header_stamp_ns

if TYPE_CHECKING:
    from refine_perception.ros.node_base import PerceptionNode


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


class StampedInputs:
    """The stamp bookkeeping of one node's inputs. `timeline` counts the jumps back in time (frames carry
    the one they arrived in); `missing` maps each optional input now left out to what the output lacks."""

    def __init__(self, node: PerceptionNode) -> None:
        self._node = node
        self._matchings: list[_Matching] = []
        self._newest_stamp: dict[str, int] = {}  # per input topic, to see time jump back
        self.time_jumps = 0
        self.timeline = 0
        self.missing: dict[str, str] = {}

    def subscribe_matched(self, inputs: Sequence[tuple[type, str]], on_match: Callable[[tuple[Any, ...]], None],
                          optional: dict[str, str], queue_size: int) -> None:
        """Subscribe to `inputs` (the image first) and hand each stamp-matched set to `on_match`."""
        sync = ApproximateTimeSync(len(inputs), queue_size, self._node.params.sync_slop_s,
                                   lambda *messages: on_match(messages))
        matching = _Matching(sync, [name for _, name in inputs], optional)
        self._matchings.append(matching)
        qos = self._node.input_qos()
        for index, (kind, name) in enumerate(inputs):
            self._node.create_subscription(kind, name, partial(self._sync_input, matching, index), qos)

    def watch(self, topic: str, msg: Any) -> None:
        """Watch the stamp of a message that is not matched with others; one without a stamp is fine."""
        try:
            self._watch_stamp(topic, header_stamp_ns(msg))
        except StampError:  # only a stamp-matched input needs a stamp
            pass

    def unmatched(self) -> int:
        """Messages the stamp synchronisers dropped without a partner (message_filters does not say)."""
        return sum(sum(matching.sync.dropped) for matching in self._matchings)

    def _sync_input(self, matching: _Matching, index: int, msg: Any) -> None:
        sync, topic = matching.sync, matching.names[index]
        try:
            stamp = header_stamp_ns(msg)
        except StampError as error:
            self._node.counters.count_dropped("malformed")
            self._node.get_logger().warning(f"dropped a message on {topic}: {error}", throttle_duration_sec=1.0)
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
        self.missing.pop(topic, None)
        self._node.get_logger().info(f"{topic} matches the images again", throttle_duration_sec=5.0)
        if matching.sync.add(index, msg):
            matching.waiting_since = None

    def _leave_out_silent_inputs(self, matching: _Matching, now: float) -> None:
        """Leave out each optional input that has kept an image waiting for `optional_input_timeout_s`:
        silent, or stamped so that it never fits (another clock). Counting from a waiting image, not the
        wall clock, keeps a paused stream (a paused bag, a player waiting for results) from looking like
        a silent partner, and frees a slow camera's images from its second frame on."""
        timeout = self._node.params.optional_input_timeout_s
        since = matching.waiting_since
        if timeout <= 0 or since is None or now - since <= timeout:
            return
        for index in matching.sync.missing_partners(0):
            topic = matching.names[index]
            matching.sync.set_absent(index, True)
            self.missing[topic] = matching.optional[topic]
            self._node.get_logger().warning(f"nothing on {topic} fits the images for {now - since:.1f} s: they are "
                                            f"processed without it ({matching.optional[topic]})",
                                            throttle_duration_sec=5.0)

    def _watch_stamp(self, topic: str, stamp: int) -> None:
        """Notice a jump back in time on `topic` (a looping bag, a restarted simulation): the stamp
        synchronisers would discard every later message as late and the tracker would link frames of
        two timelines, so both start afresh, as ROS nodes do on a clock reset; logged and counted."""
        threshold = getattr(self._node.params, "time_jump_s", None)
        if threshold is None:
            return
        newest = self._newest_stamp.get(topic)
        if newest is not None and newest - stamp > threshold * NANOSECONDS:
            self.time_jumps += 1
            self.timeline += 1
            self._node.get_logger().warning(f"time jumped back on {topic}: {stamp / NANOSECONDS:.3f} s after "
                                            f"{newest / NANOSECONDS:.3f} s; stamp matching and tracking start afresh")
            self._newest_stamp.clear()
            for matching in self._matchings:
                matching.reset()
        self._newest_stamp[topic] = max(stamp, self._newest_stamp.get(topic, stamp))
