"""CULane files: list files (`list/train_gt.txt`: `image seg_label e1 e2 e3 e4`; `list/test.txt`: `image`),
the nine category lists `list/test_split/test0_normal.txt` ... `test8_night.txt`, and one `.lines.txt` per
image holding a lane per line as `x y x y ...` in 1640x590 pixels. Prediction files use the same
`.lines.txt` form, which is what the CULane evaluator reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refine_perception.data.formats.lanes import (
    AnnotationError,
    LaneDataset,
    LaneSample,
    as_lane,
    bottom_to_top,
    parse_number,
    read_text,
)

CULANE_SIZE = (1640, 590)  # width, height
CATEGORIES = ("normal", "crowd", "hlight", "shadow", "noline", "arrow", "curve", "cross", "night")


@dataclass(frozen=True)
class CULaneEntry:
    """One list-file line. `image` is relative to the dataset root, without the leading slash the
    official lists carry; `seg_label` and `exists` (lanes 1-4 present) only come with *_gt lists."""

    image: str
    seg_label: str | None = None
    exists: tuple[bool, bool, bool, bool] | None = None


def _relative(token: str) -> str:
    return token.lstrip("/")


def read_culane_list(path: str | Path) -> list[CULaneEntry]:
    path = Path(path)
    entries = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) == 1:
            entries.append(CULaneEntry(_relative(tokens[0])))
        elif len(tokens) == 6:
            if any(flag not in ("0", "1") for flag in tokens[2:]):
                raise AnnotationError(path, number, f"lane flags must be 0 or 1, got {' '.join(tokens[2:])}")
            e1, e2, e3, e4 = (flag == "1" for flag in tokens[2:])
            entries.append(CULaneEntry(_relative(tokens[0]), _relative(tokens[1]), (e1, e2, e3, e4)))
        else:
            raise AnnotationError(
                path, number, f"expected 'image' or 'image seg_label e1 e2 e3 e4', got {len(tokens)} fields"
            )
    return entries


def write_culane_list(path: str | Path, entries: Iterable[CULaneEntry], leading_slash: bool = True) -> None:
    """Write a list file; the official train/val/test lists start paths with '/', test_split ones do not."""
    prefix = "/" if leading_slash else ""
    lines = []
    for entry in entries:
        fields = [prefix + entry.image]
        if entry.seg_label is not None and entry.exists is not None:
            fields += [prefix + entry.seg_label, *("1" if flag else "0" for flag in entry.exists)]
        lines.append(" ".join(fields) + "\n")
    Path(path).write_text("".join(lines))


def lines_path(root: str | Path, image: str) -> Path:
    """`driver_x/clip/00000.jpg` -> `root/driver_x/clip/00000.lines.txt`."""
    return Path(root) / Path(_relative(image)).with_suffix(".lines.txt")


def read_culane_lines(path: str | Path, missing_ok: bool = False) -> tuple[np.ndarray, ...]:
    """The lanes of one `.lines.txt`, each (N, 2) bottom to top. Blank lines carry no lane. With
    `missing_ok` an absent file means no lanes, as the official evaluator treats a missing prediction."""
    path = Path(path)
    if missing_ok and not path.exists():
        return ()
    lanes = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) % 2:
            raise AnnotationError(path, number, f"{len(tokens)} values, expected x y pairs")
        values = [parse_number(token, path, number, f"value {k + 1}") for k, token in enumerate(tokens)]
        lanes.append(bottom_to_top(np.array(values).reshape(-1, 2)))
    return tuple(lanes)


def write_culane_lines(path: str | Path, lanes: Sequence[np.ndarray]) -> None:
    """One lane per line, shortest round-trip decimals; parent folders are created (prediction trees)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, points in enumerate(lanes):
        lane = as_lane(points, f"{path}: lane {i}")
        lines.append(" ".join(_decimal(v) for v in lane.ravel()) + "\n")
    path.write_text("".join(lines))


def _decimal(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def read_culane_categories(root: str | Path) -> dict[str, str]:
    """Image -> category name from whichever of the nine `list/test_split` files exist."""
    categories = {}
    for index, name in enumerate(CATEGORIES):
        path = Path(root) / "list" / "test_split" / f"test{index}_{name}.txt"
        if path.is_file():
            categories.update((entry.image, name) for entry in read_culane_list(path))
    return categories


class CULaneDataset(LaneDataset):
    """The images of one list file with their `.lines.txt` lanes and, where `list/test_split` knows the
    image, its category."""

    def __init__(self, root: str | Path, list_file: str = "list/test.txt", skip_bad: bool = False) -> None:
        super().__init__(skip_bad)
        self.root = Path(root)
        self.entries = read_culane_list(self.root / list_file)
        self.categories = read_culane_categories(self.root)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> LaneSample:
        entry = self.entries[index]
        annotation = lines_path(self.root, entry.image)
        return LaneSample(
            self.root / entry.image,
            read_culane_lines(annotation),
            annotation,
            self.categories.get(entry.image),
        )
