"""TuSimple lane files: json lines with `raw_file`, `h_samples` and `lanes` (one x per h_sample, -2 where
the lane has no point); prediction files add `run_time` in milliseconds and may leave `h_samples` out
(the official submission form: LaneEval reads the rows from the ground truth).

The records keep the per-row x values because the TuSimple metric works on them; `lanes()` gives the
common (N, 2) bottom-to-top form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refine_perception.data.formats.lanes import (
    AnnotationError,
    LaneDataset,
    LaneSample,
    as_lane,
    parse_json,
    parse_number,
    read_text,
)

MISSING = -2.0  # x written where a lane has no point at that row

# The h_samples of most TuSimple clips (the rest use 240..710).
H_SAMPLES = tuple(range(160, 720, 10))


@dataclass(frozen=True)
class TuSimpleRecord:
    """One json line. `xs[i, j]` is the x of lane i at row `h_samples[j]`; negative means no point.
    `h_samples` is None for a prediction that takes its rows from the ground truth."""

    raw_file: str
    h_samples: np.ndarray | None
    xs: np.ndarray
    run_time: float | None = None

    def lanes(self) -> tuple[np.ndarray, ...]:
        """The lanes as (N, 2) arrays, bottom to top, rows without a point left out (empty lanes kept)."""
        if self.h_samples is None:
            raise ValueError(f"{self.raw_file}: a prediction without h_samples has no rows of its own; "
                             "its lanes are at the ground truth's h_samples")
        order = np.argsort(-self.h_samples, kind="stable")
        ys = self.h_samples[order].astype(np.float64)
        out = []
        for row in self.xs[:, order]:
            valid = row >= 0
            out.append(np.stack([row[valid], ys[valid]], axis=1))
        return tuple(out)

    @classmethod
    def from_lanes(
        cls,
        raw_file: str,
        lanes: Sequence[np.ndarray],
        h_samples: Sequence[float] = H_SAMPLES,
        run_time: float | None = None,
        image_width: float | None = None,
    ) -> TuSimpleRecord:
        """Sample (N, 2) polylines at the rows `h_samples` (linear between points, no extrapolation above
        or below a lane); x outside [0, image_width) becomes -2 when the width is given."""
        rows = np.asarray(h_samples, dtype=np.float64)
        xs = np.full((len(lanes), len(rows)), MISSING)
        for i, points in enumerate(lanes):
            lane = as_lane(points, f"lane {i}")
            if len(lane) < 2:
                continue
            lane = lane[np.argsort(lane[:, 1], kind="stable")]
            inside = (rows >= lane[0, 1]) & (rows <= lane[-1, 1])
            x = np.interp(rows[inside], lane[:, 1], lane[:, 0])
            if image_width is not None:
                x[(x < 0) | (x >= image_width)] = MISSING
            xs[i, inside] = x
        return cls(raw_file, rows, xs, run_time)

    def to_json(self) -> str:
        doc: dict[str, object] = {"lanes": [[_compact(x) for x in row] for row in self.xs]}
        if self.h_samples is not None:
            doc["h_samples"] = [_compact(y) for y in self.h_samples]
        doc["raw_file"] = self.raw_file
        if self.run_time is not None:
            doc["run_time"] = _compact(self.run_time)
        return json.dumps(doc)


def _compact(value: float) -> int | float:
    """Integral values as ints (how the official files store pixels), others as floats."""
    value = float(value)
    return int(value) if value.is_integer() else value


def parse_tusimple_line(text: str, path: str | Path, line: int, prediction: bool = False) -> TuSimpleRecord:
    """Parse one json line of a label file (or of a prediction file: `run_time` is then required and
    `h_samples` optional, as in TuSimple's submission format)."""
    doc = parse_json(text, path, line, line)
    if not isinstance(doc, dict):
        raise AnnotationError(path, line, "expected a json object")
    required = ("raw_file", "lanes", "run_time") if prediction else ("raw_file", "h_samples", "lanes")
    missing = [key for key in required if key not in doc]
    if missing:
        raise AnnotationError(path, line, f"missing key(s) {', '.join(missing)}")
    raw_file = doc["raw_file"]
    if not isinstance(raw_file, str) or not raw_file:
        raise AnnotationError(path, line, "raw_file must be a non-empty string")
    rows: np.ndarray | None = None
    if "h_samples" in doc:
        if not isinstance(doc["h_samples"], list) or not doc["h_samples"]:
            raise AnnotationError(path, line, "h_samples must be a non-empty list")
        rows = np.array([parse_number(y, path, line, f"h_samples[{j}]") for j, y in enumerate(doc["h_samples"])])
    lanes = doc["lanes"]
    if not isinstance(lanes, list) or not all(isinstance(lane, list) for lane in lanes):
        raise AnnotationError(path, line, "lanes must be a list of lists")
    # Without h_samples the first lane sets the row count; the metric checks it against the ground truth.
    width = len(rows) if rows is not None else len(lanes[0]) if lanes else 0
    xs = np.full((len(lanes), width), MISSING)
    for i, lane in enumerate(lanes):
        if len(lane) != width:
            against = f"for {len(rows)} h_samples" if rows is not None else f"but lane 0 has {width}"
            raise AnnotationError(path, line, f"lane {i} has {len(lane)} x values {against}")
        xs[i] = [parse_number(x, path, line, f"lanes[{i}][{j}]") for j, x in enumerate(lane)]
    run_time = parse_number(doc["run_time"], path, line, "run_time") if "run_time" in doc else None
    return TuSimpleRecord(raw_file, rows, xs, run_time)


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    return [(number, line) for number, line in enumerate(read_text(path).splitlines(), 1) if line.strip()]


def read_tusimple(path: str | Path, prediction: bool = False) -> list[TuSimpleRecord]:
    """All records of a label (or prediction) file; the first malformed line raises AnnotationError."""
    path = Path(path)
    return [parse_tusimple_line(text, path, number, prediction) for number, text in _numbered_lines(path)]


def write_tusimple(path: str | Path, records: Iterable[TuSimpleRecord]) -> None:
    Path(path).write_text("".join(record.to_json() + "\n" for record in records))


class TuSimpleDataset(LaneDataset):
    """The samples of one or more label files (e.g. label_data_0313.json ...) under `root`; image paths
    are `root / raw_file`. Lines are parsed on access, so a broken line only costs its own sample."""

    def __init__(self, root: str | Path, label_files: Sequence[str | Path], skip_bad: bool = False) -> None:
        super().__init__(skip_bad)
        self.root = Path(root)
        self._lines = [
            (path, number, text)
            for path in (self.root / name for name in label_files)
            for number, text in _numbered_lines(path)
        ]

    def __len__(self) -> int:
        return len(self._lines)

    def record(self, index: int) -> TuSimpleRecord:
        path, number, text = self._lines[index]
        return parse_tusimple_line(text, path, number)

    def load(self, index: int) -> LaneSample:
        record = self.record(index)
        return LaneSample(self.root / record.raw_file, record.lanes(), self._lines[index][0])
