"""Frame sources for the camera source node: a video file, a folder (or glob) of images, or scenes of
the synthetic generators (a drive for the lane detector, sticks for the instance segmenter, streets for
the street segmenter).

A source yields BGR uint8 frames and knows its nominal rate and camera intrinsics when it has them, so
the node that publishes it stays a thin shell.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

# The camera source's default: a drive rendered by the synthetic road-scene generator, so the demo
# needs no video file. Options as a query: synthetic:drive?seed=7&frames=300&fps=10&width=1640&height=590
DEFAULT_SOURCE = "synthetic:drive"
SYNTHETIC_PREFIX = "synthetic:drive"
# Pick-and-place sticks seen from above, with depth: synthetic:sticks?seed=2&frames=20&fps=10&width=640&height=480
STICKS_SOURCE = "synthetic:sticks"
# Street scenes for the street segmenter: synthetic:street?seed=2&frames=20&fps=10&width=1024&height=512
STREET_SOURCE = "synthetic:street"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


class SourceError(RuntimeError):
    """A frame source cannot be opened or read; the message names the path and the reason."""


@dataclass
class Frame:
    index: int
    image: np.ndarray
    # Camera intrinsics when the source knows them (3×3); None lets the node fall back to a default.
    camera_matrix: np.ndarray | None = None
    # What travels with the frame: ground truth or metadata of synthetic sources, never published as-is,
    # except "depth": the depth image aligned with `image`, uint16 millimetres along the optical axis (0 =
    # unknown), which the camera source publishes.
    extras: dict[str, object] = field(default_factory=dict)


class FrameSource(Protocol):
    name: str
    fps: float  # nominal rate; 0 when unknown

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Frame]: ...


class FolderSource:
    """Images of a folder in name order, or the files matched by a glob pattern."""

    def __init__(self, spec: str, fps: float = 10.0) -> None:
        path = Path(spec)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"{spec}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        self.files = files
        self.name = spec
        self.fps = fps

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for index, file in enumerate(self.files):
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"{file}: not a readable image")
            yield Frame(index, image)


class VideoSource:
    """Frames of a video file, decoded by OpenCV's bundled FFmpeg."""

    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise SourceError(f"{path}: no such video file")
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise SourceError(f"{path}: OpenCV cannot open this video")
        self.name = path
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        capture.release()
        self._path = path

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(self._path)
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield Frame(index, image)
                index += 1
        finally:
            capture.release()


def spec_options(spec: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The options of a source spec's query (synthetic:drive?seed=3&frames=40) over `defaults`, each parsed
    as its default's type; unknown names and unparsable values raise SourceError."""
    _, _, query = spec.partition("?")
    options = dict(defaults)
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise SourceError(f"{spec}: unknown option {key!r}; options: {', '.join(defaults)}")
        kind = type(defaults[key])
        try:
            options[key] = kind(value)
        except ValueError:
            raise SourceError(f"{spec}: {key}={value!r} is not a valid {kind.__name__}") from None
    return options


def synthetic_options(spec: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The options of a synthetic source's spec (see spec_options), checked for a usable sequence."""
    options = spec_options(spec, defaults)
    if options["frames"] < 1 or options["fps"] <= 0 or options["width"] < 64 or options["height"] < 64:
        raise SourceError(f"{spec}: needs frames >= 1, fps > 0 and an image of at least 64x64")
    return options


class SyntheticDriveSource:
    """A drive rendered on the fly by the road-scene generator: frames come with their camera
    intrinsics and exact lane ground truth (Frame.extras["sample"], a RoadSample)."""

    def __init__(self, spec: str) -> None:
        self.options = synthetic_options(spec, {"seed": 7, "frames": 300, "fps": 10.0, "width": 1640, "height": 590})
        self.name = spec
        self.fps = float(self.options["fps"])

    def __len__(self) -> int:
        return int(self.options["frames"])

    def __iter__(self) -> Iterator[Frame]:
        from refine_perception.data.synthetic.road import drive

        o = self.options
        samples = drive(int(o["seed"]), int(o["frames"]), o["fps"], int(o["width"]), int(o["height"]))
        for index, sample in enumerate(samples):
            yield Frame(index, sample.image, sample.camera.K, {"sample": sample})


class RenderedScenes:
    """Scenes of a synthetic generator (scene k depends only on seed and k), each with its intrinsics.
    A scene takes longer to render than a frame period at 10 Hz, so each is rendered once, on the first
    pass, and its frame kept for later loops (1.5 MB a frame at 640x480). Subclasses say what to render."""

    DEFAULTS: dict[str, Any] = {}

    def __init__(self, spec: str) -> None:
        self.options = synthetic_options(spec, self.DEFAULTS)
        self.name = spec
        self.fps = float(self.options["fps"])
        o = self.options
        self._scenes = self.scenes(int(o["seed"]), int(o["frames"]), int(o["width"]), int(o["height"]))
        self._frames: list[Frame] = []

    def scenes(self, seed: int, frames: int, width: int, height: int) -> Iterator[Frame]:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.options["frames"])

    def __iter__(self) -> Iterator[Frame]:
        for index in range(len(self)):
            if index == len(self._frames):  # the one generator goes on where an earlier pass stopped
                self._frames.append(next(self._scenes))
            yield self._frames[index]


class SyntheticSticksSource(RenderedScenes):
    """The sticks scenes of the instance datasets and bags, each frame with its depth image
    (Frame.extras["depth"], millimetres as the sticks bags hold it)."""

    DEFAULTS = {"seed": 2, "frames": 20, "fps": 10.0, "width": 640, "height": 480}

    def scenes(self, seed: int, frames: int, width: int, height: int) -> Iterator[Frame]:
        from refine_perception.data.synthetic.sticks import sticks_scenes

        for index, scene in enumerate(sticks_scenes(seed, frames, width, height)):
            yield Frame(index, scene.image, scene.camera.K, {"depth": scene.depth_millimetres()})


class SyntheticStreetSource(RenderedScenes):
    """The street scenes of the street datasets (scene k of seed s is image k of `refine-perception data
    generate street --seed s`), each frame with its Cityscapes ground truth (Frame.extras["scene"])."""

    DEFAULTS = {"seed": 2, "frames": 20, "fps": 10.0, "width": 1024, "height": 512}

    def scenes(self, seed: int, frames: int, width: int, height: int) -> Iterator[Frame]:
        from refine_perception.data.synthetic.street import render_street

        for index in range(frames):
            scene = render_street(np.random.SeedSequence([seed, index]), width, height)
            yield Frame(index, scene.image, scene.camera.K, {"scene": scene})


def open_source(spec: str, fps: float = 10.0) -> FrameSource:
    """Open a video file, an image folder, a glob, a synthetic drive (synthetic:drive?seed=...), synthetic
    sticks scenes (synthetic:sticks?seed=...) or street scenes (synthetic:street?seed=...). `fps` is the
    nominal rate of image folders."""
    if not spec:
        raise SourceError("no source given")
    kind = spec.split("?")[0]
    if kind == SYNTHETIC_PREFIX:
        return SyntheticDriveSource(spec)
    if kind == STICKS_SOURCE:
        return SyntheticSticksSource(spec)
    if kind == STREET_SOURCE:
        return SyntheticStreetSource(spec)
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(spec)
    if path.is_file():
        raise SourceError(f"{spec}: not a video file ({', '.join(VIDEO_SUFFIXES)}); give its folder for images")
    return FolderSource(spec, fps)


def default_camera_matrix(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole intrinsics for a horizontal field of view, principal point at the image centre."""
    focal = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
