"""Approximate-time synchroniser: exact and near matches, slop limits, drops, arrival order, overflow,
three inputs, concurrent feeding and bad stamps, on plain objects shaped like ROS messages."""

from __future__ import annotations

import math
import random
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from refine_perception.core.sync import ApproximateTimeSync, StampError, header_stamp_ns


def msg(stamp_ms: int, name: str = "") -> SimpleNamespace:
    sec, ms = divmod(stamp_ms, 1000)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=ms * 1_000_000)),
                           name=name)


def stamps_ms(sets: list[tuple[Any, ...]]) -> list[tuple[int, ...]]:
    return [tuple(header_stamp_ns(m) // 1_000_000 for m in s) for s in sets]


def make_sync(num_inputs: int = 2, queue_size: int = 10, slop: float = 0.05
              ) -> tuple[ApproximateTimeSync, list[tuple[Any, ...]]]:
    out: list[tuple[Any, ...]] = []
    return ApproximateTimeSync(num_inputs, queue_size, slop, lambda *m: out.append(m)), out


def test_header_stamp_in_nanoseconds() -> None:
    assert header_stamp_ns(msg(12_345)) == 12_345_000_000
    ros_like = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=1_700_000_000, nanosec=1)))
    assert header_stamp_ns(ros_like) == 1_700_000_000_000_000_001  # exact, no float rounding


def test_exact_stamps_match_with_zero_slop() -> None:
    sync, out = make_sync(slop=0.0)
    image, info = msg(1000, "image"), msg(1000, "info")
    assert not sync.add(0, image)
    assert sync.add(1, info)
    assert out == [(image, info)]
    assert sync.pending == (0, 0) and sync.dropped == (0, 0) and sync.emitted == 1


def test_within_slop_matches_and_exactly_slop_apart_is_inside() -> None:
    sync, out = make_sync(slop=0.05)
    sync.add(0, msg(1000))
    sync.add(1, msg(1030))  # 30 ms apart
    sync.add(0, msg(2000))
    sync.add(1, msg(2050))  # exactly slop apart
    assert stamps_ms(out) == [(1000, 1030), (2000, 2050)]


def test_beyond_slop_does_not_match_and_old_message_is_dropped_later() -> None:
    sync, out = make_sync(slop=0.05)
    sync.add(0, msg(1000))
    sync.add(1, msg(1051))  # 51 ms apart: no set
    assert out == [] and sync.pending == (1, 1)
    sync.add(0, msg(1060))  # pairs with 1051; 1000 on input 0 can never match any more
    assert stamps_ms(out) == [(1060, 1051)]
    assert sync.dropped == (1, 0) and sync.pending == (0, 0)


def test_tightest_set_wins_and_older_one_on_a_tie() -> None:
    sync, out = make_sync(slop=0.1)
    for t in (900, 980, 1030):
        sync.add(1, msg(t))
    sync.add(0, msg(1000))  # 980 is 20 ms away, 1030 is 30 ms, 900 is 100 ms
    assert stamps_ms(out) == [(1000, 980)]
    assert sync.dropped == (0, 1) and sync.pending == (0, 1)  # 900 dropped, 1030 kept

    sync2, out2 = make_sync(slop=0.1)
    sync2.add(1, msg(990))
    sync2.add(1, msg(1010))
    sync2.add(0, msg(1000))
    assert stamps_ms(out2) == [(1000, 990)]
    assert sync2.pending == (0, 1)  # 1010 stays available for the next set


def test_out_of_order_arrival() -> None:
    sync, out = make_sync(slop=0.01)
    sync.add(1, msg(2000))  # input 1 runs ahead
    sync.add(0, msg(2000))
    sync.add(0, msg(3000))
    sync.add(1, msg(1000))  # older than what input 1 already emitted: dropped on arrival
    assert sync.dropped == (0, 1)
    sync.add(0, msg(5000))
    sync.add(0, msg(4000))  # arrives after 5000 on the same input, still matchable
    sync.add(1, msg(4000))
    sync.add(1, msg(3000))  # a partner older than what input 1 emitted: too late
    assert stamps_ms(out) == [(2000, 2000), (4000, 4000)]
    assert sync.dropped == (1, 2)  # input 0's 3000 was passed over by the 4000 set
    assert sync.pending == (1, 0)


def test_queue_overflow_drops_oldest() -> None:
    sync, out = make_sync(queue_size=3, slop=0.01)
    for t in (1000, 2000, 3000, 4000):
        sync.add(0, msg(t))
    assert sync.pending == (3, 0) and sync.dropped == (1, 0)
    sync.add(0, msg(500))  # older than the whole full queue: dropped at once
    assert sync.pending == (3, 0) and sync.dropped == (2, 0)
    sync.add(1, msg(1000))  # its partner overflowed
    assert out == []
    sync.add(1, msg(2000))
    assert stamps_ms(out) == [(2000, 2000)]
    assert sync.pending == (2, 0) and sync.dropped == (2, 1)  # input 1's 1000 is too old now


def test_same_stamp_on_one_input_replaces_the_first() -> None:
    sync, out = make_sync()
    sync.add(0, msg(1000, "first"))
    sync.add(0, msg(1000, "second"))
    sync.add(1, msg(1000))
    assert [s[0].name for s in out] == ["second"]
    assert sync.dropped == (1, 0)


def test_three_inputs_need_all_stamps_within_slop() -> None:
    sync, out = make_sync(num_inputs=3, slop=0.05)
    sync.add(0, msg(1000))
    sync.add(1, msg(1040))
    sync.add(2, msg(960))  # 80 ms from 1040: both are within slop of 1000 but not of each other
    assert out == []
    sync.add(2, msg(1020))
    assert stamps_ms(out) == [(1000, 1040, 1020)]
    assert sync.dropped == (0, 0, 1)  # 960 was passed over


def test_concurrent_feeding_matches_every_pair() -> None:
    count = 400
    out: list[tuple[Any, ...]] = []
    sync = ApproximateTimeSync(2, count, 0.001, lambda *m: out.append(m))
    barrier = threading.Barrier(2)

    def feed(index: int) -> None:
        barrier.wait()
        for t in range(count):
            sync.add(index, msg(10 * t, f"{index}"))

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sync.emitted == count and sync.dropped == (0, 0) and sync.pending == (0, 0)
    assert sorted(stamps_ms(out)) == [(10 * t, 10 * t) for t in range(count)]
    assert all(a.name == "0" and b.name == "1" for a, b in out)


def test_concurrent_shuffled_feeding_accounts_for_every_message() -> None:
    count = 300
    out: list[tuple[Any, ...]] = []
    sync = ApproximateTimeSync(3, count, 0.006, lambda *m: out.append(m))
    rng = random.Random(0)
    orders = []
    for _ in range(3):  # each input jittered and locally shuffled, like a real network
        order = [20 * t + rng.randint(-3, 3) for t in range(count)]
        for start in range(0, count, 4):
            block = order[start:start + 4]
            rng.shuffle(block)
            order[start:start + 4] = block
        orders.append(order)

    barrier = threading.Barrier(3)

    def feed(index: int) -> None:
        barrier.wait()
        for t in orders[index]:
            sync.add(index, msg(1000 + t))

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(out) == sync.emitted > count // 3  # measured 146..172 over 30 shuffles
    for i in range(3):
        assert sync.emitted + sync.dropped[i] + sync.pending[i] == count
    seen = stamps_ms(out)
    assert all(max(s) - min(s) <= 6 for s in seen)
    for i in range(3):
        assert len({s[i] for s in seen}) == len(seen)  # no message emitted twice


@pytest.mark.parametrize("sec, nanosec, match", [
    (math.nan, 0, "nan"),
    (1, math.nan, "nan"),
    (-1, 0, "negative"),
    (1, -5, "negative"),
    (1, 1_000_000_000, "below 1e9"),
    (math.inf, 0, "finite"),
    ("1", 0, "must be a number"),
])
def test_bad_stamps_raise_clear_errors(sec: Any, nanosec: Any, match: str) -> None:
    sync, out = make_sync()
    bad = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)))
    with pytest.raises(StampError, match=match):
        sync.add(1, bad)
    with pytest.raises(StampError, match="input 1"):
        sync.add(1, bad)
    assert sync.pending == (0, 0) and out == []


def test_missing_header_and_custom_key() -> None:
    sync, _ = make_sync()
    with pytest.raises(StampError, match="input 0: int has no header"):
        sync.add(0, 5)
    out: list[tuple[Any, ...]] = []
    by_key = ApproximateTimeSync(2, 5, 0.0, lambda *m: out.append(m), stamp_ns=lambda m: m["t"])
    by_key.add(0, {"t": 7})
    by_key.add(1, {"t": 7})
    assert out == [({"t": 7}, {"t": 7})]
    with pytest.raises(StampError, match="input 1: stamp is negative"):
        by_key.add(1, {"t": -1})
    with pytest.raises(StampError, match="input 0: stamp is nan"):
        by_key.add(0, {"t": float("nan")})


def test_input_feeder_and_argument_checks() -> None:
    sync, out = make_sync()
    sync.input(0)(msg(10))
    sync.input(1)(msg(10))
    assert len(out) == 1
    with pytest.raises(IndexError, match="out of range"):
        sync.input(2)
    with pytest.raises(ValueError, match="num_inputs"):
        ApproximateTimeSync(1, 10, 0.1, print)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSync(2, 0, 0.1, print)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSync(2, 10, math.nan, print)


def test_an_absent_input_is_none_in_the_sets_and_its_messages_are_dropped() -> None:
    sync, out = make_sync(num_inputs=3)
    sync.add(2, msg(990))
    sync.set_absent(2, True)  # its queued message goes, counted
    assert sync.dropped == (0, 0, 1) and sync.is_absent(2)
    assert not sync.add(2, msg(1000))  # dropped on arrival while absent
    sync.add(0, msg(1000, "image"))
    assert sync.add(1, msg(1010, "info"))
    assert [(s[0].name, s[1].name, s[2]) for s in out] == [("image", "info", None)]
    assert sync.dropped == (0, 0, 2)
    sync.set_absent(2, False)
    sync.add(0, msg(1100))
    sync.add(1, msg(1100))
    assert not out[1:]  # waits for input 2 again
    assert sync.add(2, msg(1100))
    assert stamps_ms(out[1:]) == [(1100, 1100, 1100)]
    sync.set_absent(1, True)
    sync.set_absent(2, True)
    with pytest.raises(ValueError, match="present"):
        sync.set_absent(0, True)


def test_missing_partners_are_the_inputs_without_a_fit_for_the_newest_image() -> None:
    sync, _ = make_sync(num_inputs=3, slop=0.01)
    assert sync.missing_partners(0) == []  # no image waits
    sync.add(0, msg(1000))
    sync.add(1, msg(1005))  # fits, but the set still needs input 2
    sync.add(2, msg(1500))  # there, but on another clock
    assert sync.missing_partners(0) == [2]
    sync.set_absent(2, True)
    assert sync.missing_partners(0) == []


def test_reset_takes_a_stream_starting_again_from_earlier_stamps() -> None:
    sync, out = make_sync()
    sync.add(0, msg(5001_000))
    sync.add(1, msg(5001_000))
    sync.add(1, msg(5002_000))  # queued
    assert not sync.add(0, msg(11_000)) and not sync.add(1, msg(11_000))  # late: both dropped
    sync.reset()
    assert sync.pending == (0, 0)
    sync.add(0, msg(11_000))
    assert sync.add(1, msg(11_000))
    assert stamps_ms(out) == [(5001_000, 5001_000), (11_000, 11_000)]
