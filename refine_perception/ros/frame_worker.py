"""The newest-frame worker: a node's frame handler runs on its own thread and only ever sees the newest
frame, so a slow handler drops (and counts) stale frames instead of building a backlog, and a bad frame is
logged and counted instead of stopping the node."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from refine_perception.core.image_codec import ImageFormatError

if TYPE_CHECKING:
    from refine_perception.ros.node_base import PerceptionNode


class LatestFrameWorker:
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
            self._slot = (msg, time.perf_counter(), self._node.stamped_inputs.timeline)
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
                self._failed(error)
                continue
            self._node.counters.count_processed()
            self._node.latency.add(time.perf_counter() - received_at)

    def _failed(self, error: BaseException) -> None:
        """Count and log a frame the handler could not process; the worker goes on with the next one."""
        logger = self._node.get_logger()
        if isinstance(error, ImageFormatError):
            self._node.counters.count_dropped("malformed")
            logger.warning(f"dropped malformed frame on {self._topic}: {error}", throttle_duration_sec=1.0)
        else:
            self._node.counters.count_dropped("error")
            logger.error(
                f"failed on a frame from {self._topic}: {error!r}\n{''.join(traceback.format_exception(error))}",
                throttle_duration_sec=1.0,
            )

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        self._thread.join(timeout=5.0)
