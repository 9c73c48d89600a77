"""COCO instance annotations: a json with `images`, `categories` and `annotations`, each annotation a mask
as run-length encoding (compressed string or plain counts, column-major like pycocotools) or polygons,
with `bbox` [x, y, w, h], `area` and `iscrowd`.

Loading checks the structure eagerly and decodes masks on demand; anything malformed raises
AnnotationError naming the file and the annotation (position in the list and id).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from refine_perception.core import rle
from refine_perception.data.formats.lanes import AnnotationError, parse_json, read_text


def bbox(mask: np.ndarray) -> list[float]:
    """[x, y, w, h] of the pixels of a mask, as pycocotools computes it (zeros for an empty mask)."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def encode_segmentation(mask: np.ndarray, kind: str = "rle") -> dict | list[list[float]]:
    """A mask as compressed RLE (exact) or as polygons (outer contours a quarter pixel inside the pixel
    edges, so that rasterising them takes exactly the boundary pixels; holes are lost, as COCO polygons
    cannot express them)."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    if kind == "rle":
        return rle.to_coco_dict(rle.encode(mask), *mask.shape)
    if kind == "polygon":
        # Contours of the 2x mask run through its boundary pixels, a quarter of an original pixel inside
        # the edges. COCO polygon coordinates put pixel i's centre at i + 0.5.
        big = cv2.resize(mask.astype(np.uint8), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        polygons = []
        for contour in contours:
            points = (contour[:, 0].astype(np.float64) + 0.5) / 2
            if len(points) >= 3:
                polygons.append([round(float(v), 2) for v in points.ravel()])
        return polygons
    raise ValueError(f"unknown segmentation kind {kind!r} (rle or polygon)")


def mask_annotation(
    mask: np.ndarray, annotation_id: int, image_id: int, category_id: int, kind: str = "rle"
) -> dict:
    """A complete COCO annotation of one (non-crowd) instance mask."""
    mask = np.asarray(mask, bool)
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": encode_segmentation(mask, kind),
        "area": int(mask.sum()),
        "bbox": bbox(mask),
        "iscrowd": 0,
    }


def decode_segmentation(segmentation: object, height: int, width: int) -> np.ndarray:
    """The (height, width) bool mask of an RLE dict or a polygon list; ValueError if it is malformed."""
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and size == [height, width]):
            raise ValueError(f"RLE size {size!r} differs from the image's [{height}, {width}]")
        if isinstance(counts, str):
            counts = rle.from_coco_string(counts)
        elif not isinstance(counts, list):
            raise ValueError("RLE counts must be a string or a list of integers")
        return rle.decode(counts, height, width)  # RLEError (a ValueError) says what does not fit
    if isinstance(segmentation, list) and segmentation:
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0):
                raise ValueError("a polygon must be a flat list of at least 3 (x, y) pairs")
            if not all(_finite_number(v) for v in polygon):
                raise ValueError("polygon coordinates must be finite numbers")
        # pycocotools' own rasteriser, so polygons decode exactly as COCO's tools see them
        rles = coco_mask.frPyObjects(segmentation, height, width)
        return coco_mask.decode(coco_mask.merge(rles)).astype(bool)
    raise ValueError("segmentation must be an RLE dict or a non-empty list of polygons")


@dataclass(frozen=True)
class CocoDataset:
    """A checked COCO instances file: images and categories by id, annotations in file order."""

    path: Path
    images: dict[int, dict]
    annotations: list[dict]
    categories: dict[int, dict]
    _by_image: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def annotations_of(self, image_id: int) -> list[dict]:
        return [self.annotations[i] for i in self._by_image.get(image_id, [])]

    def mask(self, annotation: dict) -> np.ndarray:
        """Decode one annotation's mask; a malformed segmentation names the file and the annotation."""
        image = self.images[annotation["image_id"]]
        try:
            return decode_segmentation(annotation["segmentation"], image["height"], image["width"])
        except ValueError as error:
            index = self.annotations.index(annotation)
            name = f"annotation {index} (id {annotation['id']})"
            raise AnnotationError(self.path, None, f"{name}: {error}") from None


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_entries(path: Path, doc: dict, key: str, required: dict[str, type | tuple[type, ...]]) -> list[dict]:
    entries = doc.get(key)
    if not isinstance(entries, list):
        raise AnnotationError(path, None, f"'{key}' must be a list")
    seen: set[int] = set()
    what = key[:-1]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AnnotationError(path, None, f"{what} {index}: expected an object")
        identity = entry.get("id")
        name = f"{what} {index}" + (f" (id {identity})" if isinstance(identity, int) else "")
        for field_name, kind in required.items():
            value = entry.get(field_name)
            if field_name not in entry or isinstance(value, bool) or not isinstance(value, kind):
                raise AnnotationError(path, None, f"{name}: '{field_name}' missing or not {_type_name(kind)}")
        if entry["id"] in seen:
            raise AnnotationError(path, None, f"{name}: duplicate id")
        seen.add(entry["id"])
    return entries


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list"}


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def load_coco(path: str | Path) -> CocoDataset:
    """Read and check a COCO instances json; AnnotationError names the file and the first bad entry."""
    path = Path(path)
    doc = parse_json(read_text(path), path)
    if not isinstance(doc, dict):
        raise AnnotationError(path, None, "expected an object with images, annotations and categories")
    images = _check_entries(path, doc, "images", {"id": int, "height": int, "width": int, "file_name": str})
    categories = _check_entries(path, doc, "categories", {"id": int, "name": str})
    annotations = _check_entries(path, doc, "annotations", {"id": int, "image_id": int, "category_id": int})
    image_ids = {image["id"] for image in images}
    category_ids = {category["id"] for category in categories}
    for index, image in enumerate(images):
        if image["height"] <= 0 or image["width"] <= 0:
            raise AnnotationError(path, None, f"image {index} (id {image['id']}): height and width must be > 0")
    by_image: dict[int, list[int]] = {}
    for index, annotation in enumerate(annotations):
        name = f"annotation {index} (id {annotation['id']})"
        if annotation["image_id"] not in image_ids:
            raise AnnotationError(path, None, f"{name}: image_id {annotation['image_id']} is not in images")
        if annotation["category_id"] not in category_ids:
            category = annotation["category_id"]
            raise AnnotationError(path, None, f"{name}: category_id {category} is not in categories")
        box = annotation.get("bbox")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(_finite_number(v) for v in box)
            and box[2] >= 0
            and box[3] >= 0
        ):
            raise AnnotationError(path, None, f"{name}: bbox must be 4 finite numbers [x, y, w, h] with w, h >= 0")
        if annotation.get("iscrowd", 0) not in (0, 1):
            raise AnnotationError(path, None, f"{name}: iscrowd must be 0 or 1")
        if "segmentation" not in annotation:
            raise AnnotationError(path, None, f"{name}: no segmentation")
        by_image.setdefault(annotation["image_id"], []).append(index)
    return CocoDataset(
        path,
        {image["id"]: image for image in images},
        annotations,
        {category["id"]: category for category in categories},
        by_image,
    )


def save_coco(
    path: str | Path, images: Sequence[dict], annotations: Sequence[dict], categories: Sequence[dict]
) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"images": list(images), "annotations": list(annotations), "categories": list(categories)}
    path.write_text(json.dumps(doc, allow_nan=False))
