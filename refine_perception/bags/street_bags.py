"""Street scenes as bags, and bags as street frames.

A street bag holds per frame, all under the image's header: the camera image (Image bgr8 or JPEG
CompressedImage), its CameraInfo where the camera is known, and the ground truth as two images: the label
ids (mono8, Cityscapes label ids, as the street segmenter publishes its output) on /ground_truth/labels
and the Cityscapes instance ids (mono16: class id for stuff, class * 1000 + k for an instance) on
/ground_truth/instance_ids. The scenes come from the street generator or from a Cityscapes-layout folder
(ours, or the real Cityscapes, whose frames then have no CameraInfo: the node needs none).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from refine_perception.bags.frames import (
    CAMERA_INFO_TOPIC,
    IMAGE_TOPIC,
    IMAGE_TYPES,
    Stamp,
    camera_topics,
    check_transport,
    scan_bag,
    stamped,
    write_camera_frame,
)
from refine_perception.bags.reader import BagError
from refine_perception.bags.writer import BagWriter
from refine_perception.core.calibration import Calibration
from refine_perception.data.formats import cityscapes
from refine_perception.data.formats.lanes import AnnotationError
from refine_perception.ros.image_messages import image_to_numpy, numpy_to_compressed, numpy_to_image

TRUTH_LABELS_TOPIC = "/ground_truth/labels"
TRUTH_INSTANCE_IDS_TOPIC = "/ground_truth/instance_ids"
# ids are taken as they are, never rescaled: an 8-bit instance image holds ids < 256 (stuff only)
TRUTH_LABELS_ENCODINGS = ("mono8", "8UC1")
TRUTH_INSTANCE_IDS_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")


def _truth_pixels(msg: Any, encodings: tuple[str, ...], stamp: Stamp) -> np.ndarray:
    """The pixels of a ground-truth image as stored (one channel, no conversion), checked for its encoding."""
    if msg.encoding not in encodings:
        raise BagError(f"ground truth at {stamp}: encoding {msg.encoding!r}, expected one of {', '.join(encodings)}")
    return image_to_numpy(msg)


@dataclass(frozen=True)
class StreetSample:
    """One frame to write: BGR image, label ids (uint8), instance ids (uint16) and the camera, if known."""

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    camera: Calibration | None


def cityscapes_samples(root: str | Path, split: str, limit: int = 0) -> Iterator[StreetSample]:
    """The samples of a Cityscapes-layout split in name order (the camera of each from our generator's
    COCO json where it has one). Raises FileNotFoundError at once for a split without samples; an unreadable
    image or ground truth of another size than its image is an AnnotationError when reached."""
    samples = cityscapes.find_samples(root, split)
    if not samples:
        raise FileNotFoundError(f"{root}: no gtFine/{split}/*/*_gtFine_labelIds.png")
    cameras: dict[str, Calibration] = {}
    coco = Path(root) / "annotations" / f"instances_{split}.json"
    if coco.is_file():
        for image in json.loads(coco.read_text()).get("images", []):
            if "camera" in image:
                cameras[Path(image["file_name"]).name] = Calibration.pinhole(image["width"], image["height"],
                                                                               np.asarray(image["camera"]["K"]))
    return _read_samples(samples[:limit] if limit > 0 else samples, cameras)


def _read_samples(samples: list[cityscapes.CityscapesPaths], cameras: dict[str, Calibration]) -> Iterator[StreetSample]:
    for paths in samples:
        image = cv2.imread(str(paths.image), cv2.IMREAD_COLOR)
        if image is None:
            raise AnnotationError(paths.image, None, "not a readable image")
        truth = cityscapes.read_annotation(paths.label_ids, paths.instance_ids)
        if truth.label_ids.shape != image.shape[:2]:
            raise AnnotationError(paths.label_ids, None, f"ground truth {truth.label_ids.shape} differs from the "
                                  f"image's size {image.shape[:2]}")
        yield StreetSample(image, truth.label_ids, truth.instance_ids.astype(np.uint16), cameras.get(paths.image.name))


def write_street_bag(path: str | Path, samples: Iterable[Any], storage: str = "mcap", transport: str = "compressed",
                     fps: float = 10.0, jpeg_quality: int = 90, frame_id: str = "camera_optical_frame",
                     image_topic: str = IMAGE_TOPIC, camera_info_topic: str = CAMERA_INFO_TOPIC,
                     overwrite: bool = False) -> int:
    """Write street samples (StreetSample, or the generator's StreetScene) as a street bag; returns the
    number of frames. Log times equal the header stamps."""
    check_transport(transport)
    count = 0
    with BagWriter(path, storage, overwrite=overwrite) as bag:
        for sample, header, time_ns in stamped(samples, fps, frame_id):
            bag.write(TRUTH_LABELS_TOPIC, numpy_to_image(sample.label_ids.astype(np.uint8), "mono8", header), time_ns)
            bag.write(TRUTH_INSTANCE_IDS_TOPIC, numpy_to_image(sample.instance_ids.astype(np.uint16), "mono16", header),
                      time_ns)
            if sample.camera is not None:
                write_camera_frame(bag, sample.image, sample.camera, header, time_ns, transport, jpeg_quality,
                                   image_topic, camera_info_topic)
            elif transport == "raw":
                bag.write(image_topic, numpy_to_image(sample.image, "bgr8", header), time_ns)
            else:
                bag.write(f"{image_topic}/compressed", numpy_to_compressed(sample.image, "jpeg", jpeg_quality, header),
                          time_ns)
            count += 1
    return count


@dataclass
class StreetBag:
    """What evaluation needs from a street bag: the camera topics, the image stamps in recorded order and
    the ground truth by stamp (label ids and instance ids, decoded)."""

    path: Path
    image_topic: str
    compressed: bool
    camera_info_topic: str | None
    stamps: list[Stamp]
    truth: dict[Stamp, np.ndarray]  # label ids (H, W) uint8
    instance_truth: dict[Stamp, np.ndarray]  # instance ids (H, W) uint16
    errors: list[BagError]


def read_street_bag(path: str | Path, image_topic: str | None = None,
                    camera_info_topic: str | None = None) -> StreetBag:
    """One pass over the bag: image stamps of every image topic, both ground-truth images decoded (a frame
    with only one of them, or with one that does not decode, is not scored and its problem listed)."""
    scan = scan_bag(path, (TRUTH_LABELS_TOPIC, TRUTH_INSTANCE_IDS_TOPIC))
    cameras = {t: kind for t, kind in scan.topics.items() if t not in (TRUTH_LABELS_TOPIC, TRUTH_INSTANCE_IDS_TOPIC)}
    image_topic, camera_info_topic = camera_topics(cameras, image_topic, camera_info_topic)
    compressed = scan.topics[image_topic] == IMAGE_TYPES[1]
    labels, ids, errors = {}, {}, list(scan.errors)
    label_msgs, id_msgs = scan.decoded[TRUTH_LABELS_TOPIC], scan.decoded[TRUTH_INSTANCE_IDS_TOPIC]
    for stamp in sorted(set(label_msgs) | set(id_msgs)):
        try:
            if stamp not in label_msgs or stamp not in id_msgs:
                have, lack = ((TRUTH_LABELS_TOPIC, TRUTH_INSTANCE_IDS_TOPIC) if stamp in label_msgs else
                              (TRUTH_INSTANCE_IDS_TOPIC, TRUTH_LABELS_TOPIC))
                raise BagError(f"{have} at {stamp} has no {lack} partner")
            label_ids = _truth_pixels(label_msgs[stamp], TRUTH_LABELS_ENCODINGS, stamp)
            instance_ids = _truth_pixels(id_msgs[stamp], TRUTH_INSTANCE_IDS_ENCODINGS, stamp)
            if instance_ids.shape != label_ids.shape:
                raise BagError(f"ground truth at {stamp}: label and instance images differ in size")
        except (BagError, ValueError) as error:
            errors.append(BagError(str(error)))
            continue
        labels[stamp], ids[stamp] = label_ids, instance_ids.astype(np.uint16)
    return StreetBag(Path(path), image_topic, compressed, camera_info_topic, scan.image_stamps.get(image_topic, []),
                     labels, ids, errors)
