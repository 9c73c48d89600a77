"""Approximate-time synchronisation of two or more message streams, without ROS.

Same contract as ROS `message_filters.ApproximateTimeSynchronizer` (a queue of `queue_size` messages per
input, `slop` seconds, a callback with one message per input), so the nodes behave as users of
message_filters expect, while the logic stays testable without a ROS graph and works on any object.

Rules:
- A set is emitted as soon as one exists: every set must contain the message that just arrived (any
  other set would have been emitted when its own last member arrived), so only that message's
  neighbours are searched. Among the sets within slop (max stamp - min stamp <= slop; message_filters
  uses a strict `<`, which never matches exact stamps with slop 0) the one with the smallest spread
  wins, the older one on a tie, so a newer message stays available for the next set.
- Output is monotonic per input: after a set is emitted, each input's messages older than its member of
  the set are dropped (they could only form a set that goes back in time), and a message arriving later
  with a stamp at or before that member is dropped on arrival.
- A full queue drops its oldest message; a second message with a stamp already queued on the same
  input replaces the first. Every discarded message counts in `dropped` for its input.
- An input marked absent (`set_absent`: its publisher went quiet) takes no part in matching and is
  None in the sets emitted meanwhile, so the other inputs are not held up by it; `reset` forgets every
  queued message and the monotonic guard, for a stream whose time went backwards (a looping bag).
Stamps are integer nanoseconds: ROS time is, and float seconds at epoch scale lose sub-microsecond
precision, which would make "exactly slop apart" depend on rounding.
"""

from __future__ import annotations

import bisect
import math
import numbers
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

NANOSECONDS = 1_000_000_000


class StampError(ValueError):
    """A message whose stamp is missing, not a number, NaN, infinite or negative."""


def header_stamp_ns(msg: Any) -> int:
    """`msg.header.stamp` (sec, nanosec) in nanoseconds; works on ROS messages without importing ROS."""
    try:
        stamp = msg.header.stamp
        sec, nanosec = stamp.sec, stamp.nanosec
    except AttributeError as err:
        raise StampError(f"{type(msg).__name__} has no header.stamp.sec/nanosec: {err}") from err
    _check_stamp(sec, "header.stamp.sec")
    _check_stamp(nanosec, "header.stamp.nanosec")
    if nanosec >= NANOSECONDS:
        raise StampError(f"header.stamp.nanosec must be below 1e9, got {nanosec}")
    return round(sec * NANOSECONDS + nanosec)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_stamp(value: Any, what: str) -> None:
    if not _is_number(value):
        raise StampError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise StampError(f"{what} is {value}; stamps must be finite")
    if value < 0:
        raise StampError(f"{what} is negative ({value}); stamps must be >= 0")


class ApproximateTimeSync:
    """Joins `num_inputs` streams by stamp and calls `callback(msg_0, ..., msg_n-1)` for each set.

    Thread-safe: `add` may be called from several executor threads at once. The callback runs on the
    thread whose message completed the set, outside the lock, so a slow callback (inference) does not
    hold up the other inputs; it may therefore run concurrently with itself when sets complete on
    different threads at the same moment.
    """

    def __init__(self, num_inputs: int, queue_size: int, slop: float, callback: Callable[..., None],
                 stamp_ns: Callable[[Any], int] = header_stamp_ns) -> None:
        if num_inputs < 2:
            raise ValueError(f"num_inputs must be at least 2, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if not (_is_number(slop) and math.isfinite(slop) and slop >= 0):
            raise ValueError(f"slop must be a finite number of seconds >= 0, got {slop!r}")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.slop_ns = round(slop * NANOSECONDS)
        self._callback = callback
        self._stamp_ns = stamp_ns
        self._lock = threading.Lock()
        self._stamps: list[list[int]] = [[] for _ in range(num_inputs)]  # sorted, per input
        self._messages: list[dict[int, Any]] = [{} for _ in range(num_inputs)]
        self._last_emitted: list[int] = [-1] * num_inputs
        self._absent = [False] * num_inputs
        self._dropped = [0] * num_inputs
        self._emitted = 0

    def input(self, index: int) -> Callable[[Any], bool]:
        """A one-argument callable feeding input `index`, to pass as a subscription callback."""
        self._check_index(index)
        return partial(self.add, index)

    def add(self, index: int, msg: Any) -> bool:
        """Queue `msg` on input `index`; True when it completed a set and the callback ran."""
        self._check_index(index)
        try:
            stamp = self._stamp_ns(msg)
        except StampError as err:
            raise StampError(f"input {index}: {err}") from err
        _check_stamp(stamp, f"input {index}: stamp")
        stamp = round(stamp)
        with self._lock:
            matched = self._insert_and_match(index, stamp, msg)
        if matched is None:
            return False
        self._callback(*matched)
        return True

    def set_absent(self, index: int, absent: bool) -> None:
        """Leave input `index` out of matching (None in every set) or take it back. Going absent drops
        its queued messages (counted), and so does `add` on an absent input."""
        self._check_index(index)
        with self._lock:
            if absent and all(self._absent[i] for i in range(self.num_inputs) if i != index):
                raise ValueError("at least one input must stay present")
            if absent and not self._absent[index]:
                self._dropped[index] += len(self._stamps[index])
                self._stamps[index].clear()
                self._messages[index].clear()
            self._absent[index] = absent

    def is_absent(self, index: int) -> bool:
        self._check_index(index)
        with self._lock:
            return self._absent[index]

    def missing_partners(self, index: int) -> list[int]:
        """The present inputs that hold nothing within slop of the newest message queued on `index`: those
        that keep it waiting (silent, or stamped on another clock). Empty when `index` has nothing queued."""
        self._check_index(index)
        with self._lock:
            if not self._stamps[index]:
                return []
            newest = self._stamps[index][-1]
            return [i for i, queue in enumerate(self._stamps)
                    if i != index and not self._absent[i] and
                    bisect.bisect_left(queue, newest - self.slop_ns) == bisect.bisect_right(queue, newest + self.slop_ns)]

    def reset(self) -> None:
        """Forget every queued message (counted as dropped) and the stamps already emitted, so that a
        stream starting again from earlier stamps is matched instead of discarded as late."""
        with self._lock:
            for index in range(self.num_inputs):
                self._dropped[index] += len(self._stamps[index])
                self._stamps[index].clear()
                self._messages[index].clear()
            self._last_emitted = [-1] * self.num_inputs

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range for {self.num_inputs} inputs")

    def _insert_and_match(self, index: int, stamp: int, msg: Any) -> list[Any] | None:
        if self._absent[index] or stamp <= self._last_emitted[index]:
            self._dropped[index] += 1
            return None
        stamps, messages = self._stamps[index], self._messages[index]
        if stamp in messages:
            self._dropped[index] += 1
        else:
            bisect.insort(stamps, stamp)
        messages[stamp] = msg
        if len(stamps) > self.queue_size:
            del messages[stamps.pop(0)]
            self._dropped[index] += 1
        if stamp not in messages:  # the new message was the oldest and overflowed at once
            return None
        chosen = self._best_set(index, stamp)
        if chosen is None:
            return None
        matched = [None if s is None else self._messages[i].pop(s) for i, s in enumerate(chosen)]
        for i, s in enumerate(chosen):
            if s is None:
                continue
            queue = self._stamps[i]
            cut = bisect.bisect_right(queue, s)
            for older in queue[:cut]:
                if older != s:
                    del self._messages[i][older]
                    self._dropped[i] += 1
            del queue[:cut]
            self._last_emitted[i] = s
        self._emitted += 1
        return matched

    def _best_set(self, index: int, stamp: int) -> list[int | None] | None:
        """Per input, the stamp of the smallest-spread set within slop that holds (`index`, `stamp`)
        (None for absent inputs).

        With the set's earliest stamp fixed at `low`, the tightest choice on each input is its first
        stamp at or after `low`; `low` is one of the candidate stamps at or before `stamp`.
        """
        present = [i for i in range(self.num_inputs) if not self._absent[i]]
        window = {
            i: [stamp] if i == index else self._stamps[i][
                bisect.bisect_left(self._stamps[i], stamp - self.slop_ns):
                bisect.bisect_right(self._stamps[i], stamp + self.slop_ns)]
            for i in present
        }
        if not all(window.values()):
            return None
        best: list[int | None] | None = None
        best_spread = self.slop_ns + 1
        for low in sorted({s for candidates in window.values() for s in candidates if s <= stamp}):
            chosen: list[int | None] = [None] * self.num_inputs
            for i, candidates in window.items():
                at = bisect.bisect_left(candidates, low)
                if at == len(candidates):
                    break
                chosen[i] = candidates[at]
            else:
                spread = max(s for s in chosen if s is not None) - low
                if spread < best_spread:
                    best, best_spread = chosen, spread
        return best

    @property
    def dropped(self) -> tuple[int, ...]:
        """Messages discarded per input (overflow, replaced, too old to ever match, late arrivals)."""
        with self._lock:
            return tuple(self._dropped)

    @property
    def pending(self) -> tuple[int, ...]:
        """Messages waiting for partners, per input."""
        with self._lock:
            return tuple(len(queue) for queue in self._stamps)

    @property
    def emitted(self) -> int:
        """Sets passed to the callback so far."""
        with self._lock:
            return self._emitted
