"""Dataset generation over worker processes, in job order, with a progress bar."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import cv2
from tqdm import tqdm

from refine_perception.data.formats import coco

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


def write_dataset(
    write_image: Callable[[Job], tuple[dict, list[dict]]],
    jobs: Sequence[Job],
    workers: int,
    progress: bool,
    desc: str,
    json_path: Path,
    categories: list[dict],
) -> Path:
    """Run a per-image writer (which returns the image's COCO entry and annotations) over the jobs in
    `workers` processes and save one COCO json with the annotations numbered in image order."""
    images: list[dict] = []
    annotations: list[dict] = []
    for image, image_annotations in ordered_map(write_image, jobs, workers, progress, desc):
        images.append(image)
        annotations += [a | {"id": len(annotations) + i + 1} for i, a in enumerate(image_annotations)]
    coco.save_coco(json_path, images, annotations, categories)
    return json_path
