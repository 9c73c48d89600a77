"""Write synthetic road scenes to disk in the official CULane and TuSimple layouts.

CULane (under `out_dir/culane`), 1640x590 JPEG images:

    driver_synthetic_<split>/<clip>.MP4/<frame>.jpg          the image
    driver_synthetic_<split>/<clip>.MP4/<frame>.lines.txt    its lanes, "x y x y ..." per line
    driver_synthetic_<split>/<clip>.MP4/<frame>.json         sidecar (see below)
    laneseg_label_w16/driver_synthetic_<split>/<clip>.MP4/<frame>.png   lane k (1-4) drawn 16 px wide
    list/<split>.txt, list/<split>_gt.txt                    "/image" and "/image /seg e1 e2 e3 e4"
    list/test_split/test0_normal.txt ... test8_night.txt     (split "test" only) images per category

Clips hold 500 frames. The e1..e4 flags say which of the slots L2 L1 R1 R2 carry a lane; the
`.lines.txt` lists the present lanes left to right, like the official files.

TuSimple (under `out_dir/tusimple`), 1280x720 JPEG images:

    clips/synthetic_<split>/<index>/20.jpg   (+ 20.json sidecar)
    label_data_<split>.json                  json lines with lanes, h_samples 160..710, raw_file
                                             (named test_label.json for the split "test")

TuSimple frames are taller than CULane's (16:9), so resampling a CULane image would crop or distort
it. Each scene is therefore rendered a second time for TuSimple: the same road, traffic and camera
mount seen through a 1280x720 camera whose horizon sits where TuSimple's does (about a third of the
height); its lanes fall exactly on the h_samples rows, so nothing is interpolated.

The sidecar holds what the official formats cannot: per lane its id (stable boundary index), slot,
kind (solid, dashed, double, road_edge), colour, image points and ground points in metres, plus the
category and the camera (CameraInfo-style K, D, R, P and the mounting extrinsics). Image i depends only
on (seed, i), so any worker count writes the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from refine_perception.data.formats.culane import CATEGORIES, CULaneEntry, write_culane_lines, write_culane_list
from refine_perception.data.formats.tusimple import H_SAMPLES, TuSimpleRecord
from refine_perception.data.synthetic.parallel import ordered_map
from refine_perception.data.synthetic.road import CULANE_HORIZON, TUSIMPLE_HORIZON, RoadSample, road_sample

FORMATS = ("culane", "tusimple")
CULANE_SIZE = (1640, 590)  # width, height
TUSIMPLE_SIZE = (1280, 720)
CLIP_LENGTH = 500  # CULane frames per clip folder
SEG_WIDTH = 16  # line width of the CULane segmentation labels (laneseg_label_w16)
JPEG_QUALITY = 95
SLOTS = (-2, -1, 1, 2)  # CULane's lanes 1-4: L2 L1 R1 R2


@dataclass(frozen=True)
class _Written:
    """What the list and label files need of one image."""

    culane: tuple[str, str, tuple[bool, ...], str] | None  # image, segmentation label, slot flags, category
    tusimple: str | None  # the json line


@dataclass(frozen=True)
class _Task:
    root: Path
    split: str
    seed: int
    index: int
    formats: tuple[str, ...]


def culane_paths(split: str, index: int) -> tuple[str, str]:
    """Image and segmentation-label paths of image `index`, relative to the CULane root."""
    clip = f"driver_synthetic_{split}/{index // CLIP_LENGTH:05d}.MP4"
    frame = f"{index % CLIP_LENGTH:05d}"
    return f"{clip}/{frame}.jpg", f"laneseg_label_w16/{clip}/{frame}.png"


def tusimple_path(split: str, index: int) -> str:
    return f"clips/synthetic_{split}/{index:06d}/20.jpg"


def tusimple_label_file(split: str) -> str:
    return "test_label.json" if split == "test" else f"label_data_{split}.json"


def _save(root: Path, relative: str, sample: RoadSample, task: _Task) -> Path:
    """Image and sidecar; returns the image path."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), sample.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"cannot write {path}")
    sidecar = {"image": relative, "seed": task.seed, "index": task.index} | sample.annotation()
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def segmentation_label(sample: RoadSample) -> np.ndarray:
    """CULane-style label: lane in slot k (1-4, left to right) drawn as a SEG_WIDTH px polyline of value k."""
    label = np.zeros(sample.image.shape[:2], np.uint8)
    for lane in sample.lanes:
        points = np.round(lane.image_points * 16).astype(np.int32)
        cv2.polylines(label, [points], False, SLOTS.index(lane.slot) + 1, SEG_WIDTH, cv2.LINE_8, shift=4)
    return label


def _write(task: _Task) -> _Written:
    """Render and write image `task.index` in every requested layout."""
    culane = tusimple = None
    if "culane" in task.formats:
        sample = road_sample(task.seed, task.index, *CULANE_SIZE, horizon=CULANE_HORIZON)
        image, seg = culane_paths(task.split, task.index)
        root = task.root / "culane"
        path = _save(root, image, sample, task)
        write_culane_lines(path.with_suffix(".lines.txt"), [np.round(lane.image_points, 3) for lane in sample.lanes])
        (root / seg).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(root / seg), segmentation_label(sample)):
            raise OSError(f"cannot write {root / seg}")
        present = {lane.slot for lane in sample.lanes}
        culane = (image, seg, tuple(slot in present for slot in SLOTS), sample.category)
    if "tusimple" in task.formats:
        sample = road_sample(task.seed, task.index, *TUSIMPLE_SIZE, horizon=TUSIMPLE_HORIZON)
        raw_file = tusimple_path(task.split, task.index)
        _save(task.root / "tusimple", raw_file, sample, task)
        lanes = [np.round(lane.image_points, 3) for lane in sample.lanes]
        tusimple = TuSimpleRecord.from_lanes(raw_file, lanes, H_SAMPLES, image_width=TUSIMPLE_SIZE[0]).to_json()
    return _Written(culane, tusimple)


def generate_lane_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int,
    split: str = "train",
    workers: int = 2,
    formats: Sequence[str] = FORMATS,
    progress: bool = True,
) -> dict[str, Path]:
    """Render `num_images` road scenes of the stream `seed` and write them in the requested layouts
    (see the module docstring) under `out_dir/culane` and `out_dir/tusimple`. Splits written into the
    same `out_dir` live side by side. Returns the root of each layout written."""
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {tuple(formats)}")
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if not split or not split.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"split must be a plain name such as train, val or test, got {split!r}")
    out_dir = Path(out_dir)
    tasks = [_Task(out_dir, split, seed, index, tuple(formats)) for index in range(num_images)]
    results = list(ordered_map(_write, tasks, workers, progress, f"road scenes ({split})"))
    roots: dict[str, Path] = {}
    if "culane" in formats:
        root = roots["culane"] = out_dir / "culane"
        entries = [result.culane for result in results if result.culane]
        (root / "list").mkdir(parents=True, exist_ok=True)
        write_culane_list(root / "list" / f"{split}.txt", [CULaneEntry(image) for image, *_ in entries])
        write_culane_list(
            root / "list" / f"{split}_gt.txt", [CULaneEntry(image, seg, exists) for image, seg, exists, _ in entries]
        )
        if split == "test":
            (root / "list" / "test_split").mkdir(exist_ok=True)
            for k, name in enumerate(CATEGORIES):
                write_culane_list(
                    root / "list" / "test_split" / f"test{k}_{name}.txt",
                    [CULaneEntry(image) for image, _, _, category in entries if category == name],
                    leading_slash=False,
                )
    if "tusimple" in formats:
        root = roots["tusimple"] = out_dir / "tusimple"
        root.mkdir(parents=True, exist_ok=True)
        (root / tusimple_label_file(split)).write_text("".join(f"{result.tusimple}\n" for result in results))
    return roots
