"""Cityscapes label/instance PNGs and COCO instance json: our readers and writers against hand-built
maps, against cityscapesscripts' own conversion and conventions, and against pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cityscapesscripts.evaluation.instances2dict import instances2dict
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.csHelpers import getCsFileInfo
from cityscapesscripts.helpers.labels import id2label
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from refine_perception.data.formats import cityscapes, coco
from refine_perception.data.formats.lanes import AnnotationError

ROAD, SIDEWALK, PERSON, CAR, SKY = 7, 8, 24, 26, 23

# pycocotools 2.0.11 still calls numpy's __array__ the pre-2.0 way
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools.mask")


def small_scene() -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """6×5 map: sky on top, road below, sidewalk at the right; two cars and a person."""
    labels = np.full((5, 6), ROAD, np.uint8)
    labels[0] = SKY
    labels[:, 5] = SIDEWALK
    masks = [np.zeros((5, 6), bool) for _ in range(3)]
    masks[0][1:3, 0:2] = True  # car
    masks[1][3:5, 1:4] = True  # person
    masks[2][1:3, 3:5] = True  # car
    for mask, class_id in zip(masks, [CAR, PERSON, CAR]):
        labels[mask] = class_id
    return labels, masks, [CAR, PERSON, CAR]


def test_instance_ids_follow_cityscapes_numbering() -> None:
    labels, masks, classes = small_scene()
    ids = cityscapes.instance_ids_from_masks(labels, masks, classes)
    expected = np.array(
        [
            [23, 23, 23, 23, 23, 8],
            [26000, 26000, 7, 26001, 26001, 8],
            [26000, 26000, 7, 26001, 26001, 8],
            [7, 24000, 24000, 24000, 7, 8],
            [7, 24000, 24000, 24000, 7, 8],
        ]
    )
    np.testing.assert_array_equal(ids, expected)
    with pytest.raises(ValueError, match="class id 11"):
        cityscapes.instance_ids_from_masks(labels, masks[:1], [11])


def test_cityscapes_round_trip_and_file_conventions(tmp_path: Path) -> None:
    labels, masks, classes = small_scene()
    ids = cityscapes.instance_ids_from_masks(labels, masks, classes)
    image = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    paths = cityscapes.write_sample(tmp_path, "val", "bochum", 12, 19, image, labels, ids)
    assert paths.label_ids == tmp_path / "gtFine/val/bochum/bochum_000012_000019_gtFine_labelIds.png"
    assert paths.image == tmp_path / "leftImg8bit/val/bochum/bochum_000012_000019_leftImg8bit.png"
    assert cv2.imread(str(paths.label_ids), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    assert cv2.imread(str(paths.instance_ids), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_array_equal(cv2.imread(str(paths.image)), image)
    info = getCsFileInfo(str(paths.instance_ids))  # cityscapesscripts parses our names
    assert (info.city, info.sequenceNb, info.frameNb, info.type, info.type2) == (
        "bochum", "000012", "000019", "gtFine", "instanceIds"
    )
    assert cityscapes.find_samples(tmp_path, "val") == [paths]

    annotation = cityscapes.read_annotation(paths.label_ids, paths.instance_ids)
    np.testing.assert_array_equal(annotation.label_ids, labels)
    np.testing.assert_array_equal(annotation.instance_ids, ids)
    instances = annotation.instances()
    assert [(i.instance_id, i.class_id) for i in instances] == [(24000, PERSON), (26000, CAR), (26001, CAR)]
    np.testing.assert_array_equal(instances[0].mask, masks[1])
    np.testing.assert_array_equal(instances[2].mask, masks[2])

    # cityscapesscripts' own reading of our instance PNG finds the same instances and pixel counts
    found = instances2dict([str(paths.instance_ids)])[str(paths.instance_ids.resolve())]
    assert [(d["instID"], d["pixelCount"]) for d in found["car"]] == [(26000, 4), (26001, 4)]
    assert [(d["instID"], d["pixelCount"]) for d in found["person"]] == [(24000, 6)]


def test_lane_marking_id_and_folding() -> None:
    assert cityscapes.LANE_MARKING.id not in id2label  # a free id, not one of the official table
    assert cityscapes.ID_TO_LABEL[34].name == "lane marking"
    assert cityscapes.ID_TO_LABEL[CAR].color == id2label[CAR].color
    ids = np.array([[34, 7, 26001], [34, 11, 24000]])
    np.testing.assert_array_equal(cityscapes.fold_lane_marking(ids), [[7, 7, 26001], [7, 11, 24000]])
    assert tuple(cityscapes.colorize(np.array([[CAR]]))[0, 0]) == (142, 0, 0)  # BGR of (0, 0, 142)


def test_reader_matches_cityscapesscripts_conversion(tmp_path: Path) -> None:
    """Polygons rasterised by cityscapesscripts (the code behind json2labelImg / json2instanceImg) read
    back as the same maps our writer produces for the same scene."""
    polygons = {
        "imgHeight": 40,
        "imgWidth": 60,
        "objects": [
            {"label": "road", "polygon": [[0, 20], [59, 20], [59, 39], [0, 39]]},
            {"label": "sky", "polygon": [[0, 0], [59, 0], [59, 19], [0, 19]]},
            {"label": "car", "polygon": [[5, 22], [20, 22], [20, 30], [5, 30]]},
            {"label": "car", "polygon": [[30, 25], [45, 25], [45, 35], [30, 35]]},
            {"label": "person", "polygon": [[50, 10], [55, 10], [55, 30], [50, 30]]},
        ],
    }
    source = tmp_path / "x_000000_000000_gtFine_polygons.json"
    source.write_text(json.dumps(polygons))
    annotation = Annotation()
    annotation.fromJsonFile(str(source))
    # json2instanceImg cannot save its mode "I" image as PNG with the pinned Pillow; save it as 16 bits
    cv2.imwrite(str(tmp_path / "label.png"), np.asarray(createLabelImage(annotation, "ids")))
    cv2.imwrite(str(tmp_path / "instance.png"), np.asarray(createInstanceImage(annotation, "ids")).astype(np.uint16))
    theirs = cityscapes.read_annotation(tmp_path / "label.png", tmp_path / "instance.png")
    assert [(i.instance_id, i.class_id) for i in theirs.instances()] == [(24000, PERSON), (26000, CAR), (26001, CAR)]
    # the same maps through our writer give identical files' content
    masks = [theirs.instance_ids == 26000, theirs.instance_ids == 24000, theirs.instance_ids == 26001]
    ours = cityscapes.instance_ids_from_masks(theirs.label_ids, masks, [CAR, PERSON, CAR])
    np.testing.assert_array_equal(ours, theirs.instance_ids)
    black = np.zeros((40, 60, 3), np.uint8)
    paths = cityscapes.write_sample(tmp_path, "train", "x", 0, 0, black, theirs.label_ids, ours)
    for mine, official in ((paths.label_ids, "label.png"), (paths.instance_ids, "instance.png")):
        np.testing.assert_array_equal(
            cv2.imread(str(mine), cv2.IMREAD_UNCHANGED), cv2.imread(str(tmp_path / official), cv2.IMREAD_UNCHANGED)
        )


def test_malformed_cityscapes_files_name_the_file(tmp_path: Path) -> None:
    labels, masks, classes = small_scene()
    ids = cityscapes.instance_ids_from_masks(labels, masks, classes)
    rgb = tmp_path / "rgb_labelIds.png"
    cv2.imwrite(str(rgb), np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(AnnotationError, match="rgb_labelIds.png: expected a single-channel"):
        cityscapes.read_label_ids(rgb)
    unknown = tmp_path / "unknown_labelIds.png"
    cv2.imwrite(str(unknown), np.full((5, 6), 200, np.uint8))
    with pytest.raises(AnnotationError, match=r"unknown_labelIds.png: unknown label ids \[200\]"):
        cityscapes.read_label_ids(unknown)
    with pytest.raises(AnnotationError, match="missing.png: file not found"):
        cityscapes.read_label_ids(tmp_path / "missing.png")
    odd_name = tmp_path / "gtFine/train/aachen/aachen_12_gtFine_labelIds.png"
    odd_name.parent.mkdir(parents=True)
    cv2.imwrite(str(odd_name), labels)
    with pytest.raises(AnnotationError, match="aachen_12_gtFine_labelIds.png: name is not"):
        cityscapes.find_samples(tmp_path, "train")
    stuff_instance = tmp_path / "stuff_instanceIds.png"
    cv2.imwrite(str(stuff_instance), np.full((5, 6), 11000, np.uint16))  # building has no instances
    with pytest.raises(AnnotationError, match=r"instance ids \[11000\] belong to classes without instances"):
        cityscapes.read_instance_ids(stuff_instance)
    label_path, instance_path = tmp_path / "a_labelIds.png", tmp_path / "a_instanceIds.png"
    cv2.imwrite(str(label_path), labels)
    shifted = ids.copy()
    shifted[4, 0] = 26000  # a car pixel where the label map says road
    cv2.imwrite(str(instance_path), shifted.astype(np.uint16))
    with pytest.raises(AnnotationError, match=r"a_instanceIds.png: 1 pixels disagree .* \(x=0, y=4\)"):
        cityscapes.read_annotation(label_path, instance_path)


# ------------------------------------------------------------------------------------------- COCO


def blob_masks() -> list[np.ndarray]:
    """An L-shape with a hole, a disc and a one-pixel mask on a 40×50 image."""
    first = np.zeros((40, 50), bool)
    first[5:30, 4:12] = True
    first[22:30, 4:30] = True
    first[10:14, 7:9] = False  # hole
    disc = np.zeros((40, 50), np.uint8)
    cv2.circle(disc, (38, 12), 8, 1, -1)
    single = np.zeros((40, 50), bool)
    single[39, 49] = True
    return [first, disc.astype(bool), single]


def test_bbox_and_area_by_hand() -> None:
    mask = np.zeros((8, 10), bool)
    mask[2:5, 3:8] = True
    annotation = coco.mask_annotation(mask, 7, 3, CAR)
    assert annotation["bbox"] == [3.0, 2.0, 5.0, 3.0]
    assert annotation["area"] == 15
    assert annotation["iscrowd"] == 0
    assert coco_mask.toBbox(annotation["segmentation"]).tolist() == [3.0, 2.0, 5.0, 3.0]


def test_coco_json_loads_in_pycocotools_and_masks_round_trip(tmp_path: Path) -> None:
    masks = blob_masks()
    images = [{"id": 1, "file_name": "a.png", "height": 40, "width": 50}]
    annotations = [coco.mask_annotation(m, i + 1, 1, CAR if i else PERSON) for i, m in enumerate(masks)]
    categories = [{"id": PERSON, "name": "person"}, {"id": CAR, "name": "car"}]
    path = tmp_path / "instances.json"
    coco.save_coco(path, images, annotations, categories)

    theirs = COCO(str(path))
    for annotation, mask in zip(theirs.loadAnns(theirs.getAnnIds(imgIds=[1])), masks):
        np.testing.assert_array_equal(theirs.annToMask(annotation).astype(bool), mask)
        assert annotation["area"] == coco_mask.area(annotation["segmentation"])
    ours = coco.load_coco(path)
    assert [a["id"] for a in ours.annotations_of(1)] == [1, 2, 3]
    for annotation, mask in zip(ours.annotations_of(1), masks):
        np.testing.assert_array_equal(ours.mask(annotation), mask)


def test_uncompressed_rle_and_polygons_decode_like_pycocotools() -> None:
    mask = blob_masks()[0]
    plain = {"size": [40, 50], "counts": _column_major_runs(mask)}
    theirs = coco_mask.decode(coco_mask.frPyObjects(plain, 40, 50)).astype(bool)
    np.testing.assert_array_equal(theirs, mask)  # the hand-made runs are what pycocotools expects
    np.testing.assert_array_equal(coco.decode_segmentation(plain, 40, 50), mask)

    rectangle = [[2.0, 3.0, 9.0, 3.0, 9.0, 7.0, 2.0, 7.0]]
    expected = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(rectangle, 20, 20))).astype(bool)
    np.testing.assert_array_equal(coco.decode_segmentation(rectangle, 20, 20), expected)


def _column_major_runs(mask: np.ndarray) -> list[int]:
    """Plain COCO counts by hand: alternating runs of 0s and 1s down the columns, starting with 0s."""
    flat = mask.T.ravel().astype(int)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return ([0] if flat[0] else []) + runs


def test_polygon_encoding_matches_the_mask_where_polygons_can() -> None:
    """Polygons cannot hold holes; otherwise pycocotools' rasterisation gives back the pixels."""
    for mask in blob_masks()[1:]:
        polygons = coco.encode_segmentation(mask, "polygon")
        decoded = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, 40, 50))).astype(bool)
        np.testing.assert_array_equal(decoded, mask)
    holed = blob_masks()[0]
    decoded = coco.decode_segmentation(coco.encode_segmentation(holed, "polygon"), 40, 50)
    filled = holed.copy()
    filled[10:14, 7:9] = True
    np.testing.assert_array_equal(decoded, filled)


def write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def valid_doc() -> dict:
    mask = blob_masks()[1]
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 50}],
        "annotations": [coco.mask_annotation(mask, 5, 1, CAR), coco.mask_annotation(mask, 7, 1, CAR)],
        "categories": [{"id": CAR, "name": "car"}],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("images"), "'images' must be a list"),
        (lambda d: d["annotations"][1].update(image_id=9), r"annotation 1 \(id 7\): image_id 9 is not in images"),
        (lambda d: d["annotations"][1].update(category_id=1), r"annotation 1 \(id 7\): category_id 1"),
        (lambda d: d["annotations"][1].update(id=5), r"annotation 1 \(id 5\): duplicate id"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), r"annotation 0 \(id 5\): bbox must be"),
        (lambda d: d["annotations"][1].pop("segmentation"), r"annotation 1 \(id 7\): no segmentation"),
        (lambda d: d["annotations"][0].update(iscrowd=2), r"annotation 0 \(id 5\): iscrowd"),
        (lambda d: d["images"][0].update(height="40"), r"image 0 \(id 1\): 'height' missing or not an integer"),
        (lambda d: d["images"][0].update(width=0), r"image 0 \(id 1\): height and width must be > 0"),
    ],
)
def test_malformed_coco_json_names_file_and_annotation(tmp_path: Path, change, message: str) -> None:
    doc = valid_doc()
    change(doc)
    path = write_json(tmp_path / "broken.json", doc)
    with pytest.raises(AnnotationError, match="broken.json: " + message):
        coco.load_coco(path)


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ({"size": [40, 50], "counts": [10, 5]}, "counts sum to 15 but a 40×50 mask has 2000 pixels"),
        ({"size": [40, 50], "counts": "0P"}, "compressed RLE is truncated"),
        ({"size": [40, 50], "counts": [1990, 10.5]}, "counts must be integers"),
        ({"size": [50, 40], "counts": [2000]}, r"RLE size \[50, 40\] differs"),
        ([[1.0, 2.0, 3.0]], "a polygon must be a flat list of at least 3"),
        ([[1.0, 2.0, 3.0, 4.0, "x", 6.0]], "polygon coordinates must be finite numbers"),
        ({"counts": 3}, "RLE size"),
    ],
)
def test_malformed_segmentation_names_file_and_annotation(tmp_path: Path, segmentation: object, message: str) -> None:
    doc = valid_doc()
    doc["annotations"][1]["segmentation"] = segmentation
    dataset = coco.load_coco(write_json(tmp_path / "seg.json", doc))
    dataset.mask(dataset.annotations[0])
    with pytest.raises(AnnotationError, match=r"seg.json: annotation 1 \(id 7\): " + message):
        dataset.mask(dataset.annotations[1])


def test_coco_json_syntax_and_nan_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [],\n"annotations": [],\n"categories": [,]}')
    with pytest.raises(AnnotationError, match="bad.json:3: not valid json"):
        coco.load_coco(bad)
    nan = tmp_path / "nan.json"
    nan.write_text('{"images": [], "annotations": [], "categories": [], "x": NaN}')
    with pytest.raises(AnnotationError, match="nan.json: not valid json"):
        coco.load_coco(nan)
