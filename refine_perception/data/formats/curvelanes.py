"""CurveLanes files: `<split>/<split>.txt` lists images as `images/<name>.jpg`, and
`<split>/labels/<name>.lines.json` holds `{"Lines": [[{"x": "1009.0", "y": "1439.0"}, ...], ...]}` with
the coordinates as strings, in the pixels of the image (whose size varies across the dataset).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from refine_perception.data.formats.lanes import (
    AnnotationError,
    LaneDataset,
    LaneSample,
    as_lane,
    bottom_to_top,
    parse_json,
    parse_number,
    read_text,
)


def read_curvelanes_json(path: str | Path) -> tuple[np.ndarray, ...]:
    """The lanes of one label file, each (N, 2) bottom to top (point order along the lane kept)."""
    path = Path(path)
    doc = parse_json(read_text(path), path)
    if not isinstance(doc, dict) or not isinstance(doc.get("Lines"), list):
        raise AnnotationError(path, 1, 'expected an object with a "Lines" list')
    lanes = []
    for i, line in enumerate(doc["Lines"]):
        if not isinstance(line, list):
            raise AnnotationError(path, None, f"Lines[{i}] is not a list of points")
        points = []
        for j, point in enumerate(line):
            if not isinstance(point, dict) or "x" not in point or "y" not in point:
                raise AnnotationError(path, None, f'Lines[{i}][{j}] needs "x" and "y"')
            points.append(
                (
                    parse_number(point["x"], path, None, f"Lines[{i}][{j}].x"),
                    parse_number(point["y"], path, None, f"Lines[{i}][{j}].y"),
                )
            )
        lanes.append(bottom_to_top(np.array(points, dtype=np.float64).reshape(-1, 2)))
    return tuple(lanes)


def write_curvelanes_json(path: str | Path, lanes: Sequence[np.ndarray]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "Lines": [
            [{"x": repr(float(x)), "y": repr(float(y))} for x, y in as_lane(points, f"{path}: lane {i}")]
            for i, points in enumerate(lanes)
        ]
    }
    path.write_text(json.dumps(doc))


class CurveLanesDataset(LaneDataset):
    """The images listed in `root/<split>/<split>.txt` with their `labels/*.lines.json` lanes."""

    def __init__(self, root: str | Path, split: str = "train", skip_bad: bool = False) -> None:
        super().__init__(skip_bad)
        self.folder = Path(root) / split
        listing = self.folder / f"{split}.txt"
        lines = read_text(listing).splitlines()
        self.images = [line.split()[0].lstrip("/") for line in lines if line.strip()]

    def __len__(self) -> int:
        return len(self.images)

    def label_path(self, image: str) -> Path:
        """`images/abc.jpg` -> `<split>/labels/abc.lines.json`."""
        return self.folder / "labels" / (Path(image).stem + ".lines.json")

    def load(self, index: int) -> LaneSample:
        image = self.images[index]
        label = self.label_path(image)
        return LaneSample(self.folder / image, read_curvelanes_json(label), label)
