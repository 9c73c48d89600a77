"""Dataset generation over worker processes, in job order, with a progress bar."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import cv2
from tqdm import tqdm

Job = TypeVar("Job")
Result = TypeVar("Result")


def _single_threaded() -> None:
    """Worker start-up: one OpenCV thread per process, so the workers do not fight over the cores."""
    cv2.setNumThreads(1)


def ordered_map(
    fn: Callable[[Job], Result], jobs: Sequence[Job], workers: int, progress: bool, desc: str
) -> Iterator[Result]:
    """fn over jobs, results in job order, in `workers` spawned processes (in this one when workers <= 1).
    Spawned, not forked: callers (nodes, training loops) may hold threads that a fork would copy
    mid-lock. A worker that cannot start (a script without a `__main__` guard) fails the run with
    BrokenProcessPool instead of being restarted for ever."""
    with tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress) as bar:
        if workers <= 1:
            for job in jobs:
                yield fn(job)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded) as pool:
            for result in pool.map(fn, jobs, chunksize=4):
                yield result
                bar.update()
