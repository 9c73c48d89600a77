"""COCO RLE codec against pycocotools (the reference COCOeval uses) and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from refine_perception.core import rle
from refine_perception.core.rle import RLEError

# pycocotools' decode trips a numpy 2 deprecation of its own; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")


def _coco_decode(counts: np.ndarray, h: int, w: int) -> np.ndarray:
    """How MaskRLE.msg says a consumer decodes our counts."""
    return mask_utils.decode(mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w))


def _coco_encode(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8))


def _random_mask(rng: np.random.Generator) -> np.ndarray:
    """Noise, sparse dots or a few axis-aligned blocks, in sizes from 1×1 up to 70×90."""
    h, w = (int(v) for v in rng.integers(1, [70, 90]))
    kind = rng.integers(3)
    if kind == 0:
        return rng.random((h, w)) < rng.choice([0.0, 0.02, 0.5, 0.98, 1.0])
    if kind == 1:
        return rng.random((h, w)) < 0.1
    mask = np.zeros((h, w), bool)
    for _ in range(rng.integers(1, 4)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        mask[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1)] = True
    return mask


def _assert_matches_coco(mask: np.ndarray) -> None:
    h, w = mask.shape
    expected = mask != 0
    counts = rle.encode(mask)
    assert counts.dtype == np.uint32
    np.testing.assert_array_equal(_coco_decode(counts, h, w), expected)
    np.testing.assert_array_equal(rle.decode(counts, h, w), expected)
    reference = _coco_encode(mask)
    assert rle.to_coco_string(counts) == reference["counts"].decode("ascii")
    assert rle.to_coco_dict(counts, h, w) == {"size": [h, w], "counts": reference["counts"].decode("ascii")}
    np.testing.assert_array_equal(rle.from_coco_string(reference["counts"]), counts)
    assert rle.area(counts) == int(mask_utils.area(reference)) == int(expected.sum())
    assert rle.bbox(counts, h, w) == tuple(int(v) for v in mask_utils.toBbox(reference))


def test_random_masks_match_pycocotools() -> None:
    rng = np.random.default_rng(20240611)
    for _ in range(500):
        _assert_matches_coco(_random_mask(rng))


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((1, 1), bool),
        np.ones((1, 1), bool),
        np.zeros((4, 7), bool),
        np.ones((4, 7), bool),
        np.eye(1, 12, 0, dtype=bool),  # single row, first pixel
        np.eye(12, 1, -11, dtype=bool),  # single column, last pixel
    ],
    ids=["1x1-off", "1x1-on", "all-zero", "all-one", "row-first", "column-last"],
)
def test_edge_masks_match_pycocotools(mask: np.ndarray) -> None:
    _assert_matches_coco(mask)


def test_hand_computed_counts() -> None:
    # Fortran order of [[0, 1], [1, 1]] is 0, 1, 1, 1.
    np.testing.assert_array_equal(rle.encode(np.array([[0, 1], [1, 1]], np.uint8)), [1, 3])
    # A set first pixel needs an empty leading run of 0s; a set last pixel ends on a run of 1s.
    np.testing.assert_array_equal(rle.encode(np.array([[1, 0], [0, 0]], bool)), [0, 1, 3])
    np.testing.assert_array_equal(rle.encode(np.array([[0, 0, 0], [0, 0, 1]], bool)), [5, 1])
    np.testing.assert_array_equal(rle.encode(np.zeros((2, 3), bool)), [6])
    np.testing.assert_array_equal(rle.encode(np.ones((2, 3), bool)), [0, 6])
    np.testing.assert_array_equal(rle.encode(np.zeros((0, 5), bool)), [0])


def test_hand_computed_compressed_string() -> None:
    # 0 -> "0"; 100 -> groups 4|0x20, 3 -> "T3"; 5 -> "5"; 90 - 100 = -10 -> 22 -> "F".
    assert rle.to_coco_string([0, 100, 5, 90]) == "0T35F"
    # 120 - 100 = 20 needs a second group: 20|0x20 -> "d", then 0 -> "0".
    assert rle.to_coco_string([0, 100, 5, 120]) == "0T35d0"
    np.testing.assert_array_equal(rle.from_coco_string("0T35F"), [0, 100, 5, 90])
    np.testing.assert_array_equal(rle.from_coco_string(b"0T35d0"), [0, 100, 5, 120])
    assert rle.to_coco_string([]) == ""
    assert rle.from_coco_string("").size == 0


def test_compressed_string_of_large_counts_matches_pycocotools() -> None:
    # Big jumps up and down exercise every group count and both signs of the deltas.
    counts = [0, 2**32 - 1, 7, 1, 2**31, 2**20, 3, 2**32 - 1]
    reference = mask_utils.frPyObjects({"size": [1, sum(counts)], "counts": counts}, 1, sum(counts))
    assert rle.to_coco_string(counts) == reference["counts"].decode("ascii")
    np.testing.assert_array_equal(rle.from_coco_string(reference["counts"]), counts)


def test_bbox_of_run_wrapping_into_next_column_spans_full_height() -> None:
    # 3×3, pixels (row 2, col 0) and (row 0, col 1): one run over Fortran indices 2..3.
    counts = [2, 2, 5]
    reference = mask_utils.frPyObjects({"size": [3, 3], "counts": counts}, 3, 3)
    assert rle.bbox(counts, 3, 3) == (0, 0, 2, 3) == tuple(int(v) for v in mask_utils.toBbox(reference))
    # Same pixels in separate columns without wrapping: rows 1..2 of column 1 only.
    assert rle.bbox([4, 2, 3], 3, 3) == (1, 1, 1, 2)
    assert rle.bbox([9], 3, 3) == (0, 0, 0, 0)


def test_memory_layouts_and_dtypes_agree() -> None:
    rng = np.random.default_rng(7)
    base = rng.random((41, 57)) < 0.3
    expected = rle.encode(base)
    np.testing.assert_array_equal(_coco_decode(expected, *base.shape), base)
    for variant in (
        np.asfortranarray(base),
        base.astype(np.uint8),
        np.asfortranarray(base.astype(np.uint8)),
        base.astype(np.uint8) * 255,
        base.astype(np.int32),
    ):
        np.testing.assert_array_equal(rle.encode(variant), expected)
    # Strided views of C- and Fortran-ordered parents.
    for parent in (base, np.asfortranarray(base)):
        for view in (parent[::2, ::3], parent[5:30, 1::2], parent.T, parent[::-1, ::-1]):
            _assert_matches_coco(view)


def test_decode_roundtrip_accepts_lists() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((23, 31)) < 0.4
    decoded = rle.decode(rle.encode(mask), 23, 31)
    assert decoded.dtype == bool and decoded.shape == (23, 31)
    np.testing.assert_array_equal(decoded, mask)
    # Plain lists (what a ROS message field holds) decode the same as arrays.
    np.testing.assert_array_equal(rle.decode([int(c) for c in rle.encode(mask)], 23, 31), mask)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([3, 2], "sum to 5 but a 2×3 mask has 6 pixels"),
        ([3, 2, 2], "sum to 7"),
        ([], "sum to 0"),
        ([7, -1], "must not be negative"),
        ([[3, 3]], "must be 1-D"),
        ([3.0, 3.0], "must be integers"),
        ([2**33, 0], "must fit in uint32"),
    ],
)
def test_malformed_counts_raise(counts: list, message: str) -> None:
    with pytest.raises(RLEError, match=message):
        rle.decode(counts, 2, 3)
    with pytest.raises(RLEError, match=message):
        rle.bbox(counts, 2, 3)
    with pytest.raises(RLEError, match=message):
        rle.to_coco_dict(counts, 2, 3)


@pytest.mark.parametrize(
    ("s", "message"),
    [
        ("0T3 5", "outside '0'..'o' at index 3"),
        ("0T35\u00e9", "outside '0'..'o' at index 4"),
        ("0T", "truncated"),
        ("ooooooo0", "8 groups"),
        ("000F", "must not be negative"),  # the fourth count is 0 + (-10)
    ],
)
def test_malformed_compressed_strings_raise(s: str, message: str) -> None:
    with pytest.raises(RLEError, match=message):
        rle.from_coco_string(s)


def test_bad_masks_raise() -> None:
    with pytest.raises(RLEError, match=r"2-D, got shape \(2, 2, 3\)"):
        rle.encode(np.zeros((2, 2, 3), bool))
    with pytest.raises(RLEError, match="bool or integer, got dtype float32"):
        rle.encode(np.zeros((2, 2), np.float32))
    with pytest.raises(RLEError, match="must not be negative"):
        rle.decode([0], -1, 0)
