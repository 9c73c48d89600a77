"""Running statistics for nodes and benchmarks: input rate, latency percentiles, drop counters.

Kept ROS-free so the same figures come out of a node's /diagnostics, the in-process graph runner and
the offline benchmarks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class RateMeter:
    """Events per second over a sliding time window (robust to bursts, unlike 1/last-interval).
    Thread-safe: frames are counted on one thread and rates read on another."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def _forget(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def tick(self, t: float) -> None:
        with self._lock:
            self._times.append(t)
            self._forget(t)

    def rate(self, now: float) -> float:
        with self._lock:
            self._forget(now)
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyWindow:
    """The last `size` latencies in seconds; percentiles on demand (bounded memory over long runs).
    A worker thread adds while the diagnostics timer reads, hence the lock."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def __len__(self) -> int:
        return len(self._values)

    def summary_ms(self) -> dict[str, float]:
        """mean / p50 / p95 / max in milliseconds; empty dict before the first sample."""
        with self._lock:
            values = np.array(self._values, dtype=float) * 1e3
        if not len(values):
            return {}
        p50, p95 = np.percentile(values, [50, 95])
        return {"mean": float(values.mean()), "p50": float(p50), "p95": float(p95), "max": float(values.max())}


@dataclass
class FrameCounters:
    """What happened to every input frame: processed, or dropped for a named reason.

    Thread-safe because a node's subscription callback and its worker thread both count.
    """

    received: int = 0
    processed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_received(self) -> None:
        with self._lock:
            self.received += 1

    def count_processed(self) -> None:
        with self._lock:
            self.processed += 1

    def count_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            out = {"received": self.received, "processed": self.processed, "dropped": sum(self.dropped.values())}
            out.update({f"dropped_{reason}": n for reason, n in sorted(self.dropped.items())})
        return out


def interleaved_median_ms(runs: dict[str, Callable[[], object]], rounds: int = 4, per_turn: int = 3,
                          warmup: int = 3) -> dict[str, float]:
    """Median ms of each of `runs`, timed in turns, so a load that comes and goes on the machine weighs on
    every candidate alike instead of on whichever ran at the time (shared machines swing by 1.5x within
    minutes). Each turn starts with an untimed call: the previous candidate's threads may still be spinning
    (onnxruntime's pool spins a while after a run)."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            run()
            for _ in range(per_turn):
                start = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - start)
    return {key: float(np.median(values) * 1000.0) for key, values in times.items()}


def median_ms(run: Callable[[], object], runs: int = 10, warmup: int = 3) -> float:
    """Median wall time of `run()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)
