"""What the lane formats (TuSimple, CULane, CurveLanes) share: the in-memory lane, the annotation error,
and dataset iteration that can step over broken samples.

A lane is a float64 array of shape (N, 2) holding (x, y) pixel coordinates ordered from the bottom of the
image to the top, the order CULane files use and lane detectors predict in.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class AnnotationError(ValueError):
    """An annotation file that does not follow its format; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class LaneSample:
    """One annotated image: where the image is and its lanes (each (N, 2), bottom to top)."""

    image: Path
    lanes: tuple[np.ndarray, ...]
    annotation: Path
    category: str | None = None


def parse_number(token: object, path: str | Path, line: int | None, what: str) -> float:
    """A finite float from a number or a numeric string; anything else is an AnnotationError."""
    if isinstance(token, bool):
        raise AnnotationError(path, line, f"{what} is a boolean, expected a number")
    try:
        value = float(token)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnnotationError(path, line, f"{what} is {token!r}, expected a number") from None
    if not math.isfinite(value):
        raise AnnotationError(path, line, f"{what} is {token!r}, expected a finite number")
    return value


def read_text(path: Path) -> str:
    """A file's text, with a missing or unreadable file reported as an AnnotationError too."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise AnnotationError(path, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(path, None, f"cannot read ({error})") from None


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not a finite number")


def parse_json(text: str, path: str | Path, first_line: int = 1, line: int | None = None) -> object:
    """json.loads that rejects NaN/Infinity (Python's json accepts them) and reports errors as
    AnnotationError: syntax errors at their line (counted from `first_line`), the others at `line`."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise AnnotationError(path, first_line + error.lineno - 1, f"not valid json ({error.msg})") from None
    except ValueError as error:
        raise AnnotationError(path, line, f"not valid json ({error})") from None


def bottom_to_top(points: np.ndarray) -> np.ndarray:
    """Reverse a polyline given top to bottom; the point order along the lane is kept otherwise."""
    if len(points) >= 2 and points[0, 1] < points[-1, 1]:
        return points[::-1].copy()
    return points


def as_lane(points: object, name: str) -> np.ndarray:
    """Validate a caller's lane (metrics, writers): finite (N, 2) floats, or a ValueError naming `name`."""
    try:
        lane = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: not an array of numbers") from None
    if lane.size == 0:
        return np.zeros((0, 2))
    if lane.ndim != 2 or lane.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (N, 2) of (x, y) points, got {lane.shape}")
    if not np.isfinite(lane).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return lane


class LaneDataset(ABC):
    """Base of the lane datasets: indexable samples, and iteration that either stops at the first
    malformed annotation (`skip_bad=False`) or logs it, keeps it in `skipped` and goes on, so one
    broken file does not end a training epoch."""

    def __init__(self, skip_bad: bool = False) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[AnnotationError] = []

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> LaneSample:
        """Read sample `index`; a malformed annotation raises AnnotationError whatever `skip_bad` says."""

    def __getitem__(self, index: int) -> LaneSample:
        return self.load(index)

    def __iter__(self) -> Iterator[LaneSample]:
        for index in range(len(self)):
            try:
                sample = self.load(index)
            except AnnotationError as error:
                if not self.skip_bad:
                    raise
                self.skipped.append(error)
                log.warning("skipping sample %d: %s", index, error)
                continue
            yield sample
