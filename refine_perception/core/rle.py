"""Binary masks as COCO run-length encoding, the form `refine_msgs/MaskRLE` carries.

Runs are taken over the pixels in column-major (Fortran) order and alternate 0/1, starting with a
run of 0s that may be empty; this is what pycocotools' `frPyObjects` / `decode` expect, so masks we
publish or write to result files evaluate with COCOeval unchanged. The compressed string form is the
one pycocotools stores in json files. pycocotools itself is only the reference in the tests: this
module needs numpy alone, so nodes and tools can use it without the C extension.
"""

from __future__ import annotations

import numpy as np

_UINT32_MAX = np.iinfo(np.uint32).max
# A count delta needs at most 34 signed bits, i.e. seven 5-bit groups in the compressed string.
_MAX_GROUPS = 7
_GROUP_SHIFTS = 5 * np.arange(_MAX_GROUPS, dtype=np.int64)


class RLEError(ValueError):
    """Counts, a mask or a compressed string that cannot be a valid COCO RLE; the message says why."""


def encode(mask: np.ndarray) -> np.ndarray:
    """Counts of a 2-D mask (any non-zero pixel is foreground), as uint32.

    Transitions are found with vectorised comparisons in the array's own memory layout and only
    their (few) positions are reordered, instead of copying a C-ordered mask into Fortran order.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise RLEError(f"mask must be 2-D, got shape {mask.shape}")
    if mask.dtype != bool and mask.dtype.kind not in "iu":
        raise RLEError(f"mask must be bool or integer, got dtype {mask.dtype}")
    fg = mask if mask.dtype == bool else mask != 0
    h, w = fg.shape
    if fg.size == 0:
        return np.zeros(1, np.uint32)
    # Pixel p = col * h + row in Fortran order; collect every p whose value differs from pixel p - 1.
    inside = fg[1:] != fg[:-1]  # same column, row >= 1
    if inside.flags.f_contiguous:  # memory is already column-major: nonzero yields sorted positions
        col, row = np.divmod(np.flatnonzero(inside.T), max(h - 1, 1))
    else:
        row, col = np.divmod(np.flatnonzero(inside), w)
    across = np.flatnonzero(fg[0, 1:] != fg[-1, :-1]) + 1  # first pixel of a column vs last of the previous
    starts = np.concatenate((col * h + row + 1, across * h))
    starts.sort()
    # A leading 0 boundary twice gives the empty first run of 0s when the first pixel is set.
    lead = [0, 0] if fg[0, 0] else [0]
    return np.diff(np.concatenate((lead, starts, [fg.size]))).astype(np.uint32)


def decode(counts: np.ndarray | list[int], height: int, width: int) -> np.ndarray:
    """The height × width bool mask of `counts` (a Fortran-ordered view of the expanded runs)."""
    runs = _checked(counts, height, width)
    values = np.arange(runs.size) % 2 == 1
    return np.repeat(values, runs).reshape((height, width), order="F")


def area(counts: np.ndarray | list[int]) -> int:
    """Number of foreground pixels: the sum of the odd (1-valued) runs."""
    return int(_as_counts(counts)[1::2].sum())


def bbox(counts: np.ndarray | list[int], height: int, width: int) -> tuple[int, int, int, int]:
    """Tight box (x, y, w, h) of the foreground, from the run ends alone; (0, 0, 0, 0) when empty.

    Same numbers as pycocotools' toBbox for canonical counts. A run that wraps into the next column
    covers the bottom of one column and the top of the next, so the box then spans the full height.
    Empty 1-runs are skipped rather than read as a pixel before the run, as toBbox would.
    """
    runs = _checked(counts, height, width)
    ends = np.cumsum(runs)
    ones = np.flatnonzero(runs[1::2]) * 2 + 1
    if ones.size == 0:
        return (0, 0, 0, 0)
    first_col, first_row = np.divmod(ends[ones] - runs[ones], height)
    last_col, last_row = np.divmod(ends[ones] - 1, height)
    x0, x1 = int(first_col.min()), int(last_col.max())
    if np.any(last_col > first_col):
        y0, y1 = 0, height - 1
    else:
        y0, y1 = int(first_row.min()), int(last_row.max())
    return (x0, y0, x1 - x0 + 1, y1 - y0 + 1)


def to_coco_string(counts: np.ndarray | list[int]) -> str:
    """pycocotools' compressed counts string (its `rleToString`), as str for json.

    Each count from the fourth on is stored as its difference to the count two before it, then
    written as a signed little-endian sequence of 5-bit groups, one ASCII character per group
    (value + 48, bit 0x20 set when another group follows).
    """
    runs = _as_counts(counts).astype(np.int64)
    delta = runs.copy()
    delta[3:] -= runs[1:-2]
    magnitude = np.where(delta < 0, ~delta, delta)
    # Groups needed: one more for every 5 bits beyond what a single signed group (-16..15) holds.
    n_groups = 1 + (magnitude[:, None] >= (1 << (_GROUP_SHIFTS[1:] - 1))).sum(axis=1)
    groups = (delta[:, None] >> _GROUP_SHIFTS) & 0x1F
    position = np.arange(_MAX_GROUPS)
    groups |= np.where(position < (n_groups - 1)[:, None], 0x20, 0)
    chars = (groups + 48)[position < n_groups[:, None]]
    return chars.astype(np.uint8).tobytes().decode("ascii")


def from_coco_string(s: str | bytes) -> np.ndarray:
    """uint32 counts of a compressed string written by pycocotools or `to_coco_string`."""
    raw = s.encode() if isinstance(s, str) else bytes(s)  # non-ASCII turns into bytes >= 128, rejected below
    chars = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, np.uint32)
    bad = np.flatnonzero((chars < 0) | (chars > 63))
    if bad.size:
        at = int(bad[0])
        raise RLEError(f"compressed RLE has a character outside '0'..'o' at index {at}: {raw[at:at + 1]!r}")
    last = (chars & 0x20) == 0  # the final group of each count
    if not last[-1]:
        raise RLEError("compressed RLE is truncated: its last character announces another group")
    ends = np.flatnonzero(last)
    firsts = np.concatenate(([0], ends[:-1] + 1))
    n_groups = ends - firsts + 1
    if n_groups.max() > _MAX_GROUPS:
        raise RLEError(f"compressed RLE has a count of {n_groups.max()} groups, more than uint32 needs")
    position = np.arange(chars.size) - np.repeat(firsts, n_groups)
    delta = np.add.reduceat((chars & 0x1F) << (5 * position), firsts)
    negative = (chars[ends] & 0x10) != 0
    delta[negative] -= np.int64(1) << (5 * n_groups[negative])
    runs = delta.copy()
    runs[1::2] = np.cumsum(delta[1::2])
    runs[2::2] = np.cumsum(delta[2::2])
    return _as_counts(runs)


def to_coco_dict(counts: np.ndarray | list[int], height: int, width: int) -> dict[str, object]:
    """`{"size": [h, w], "counts": str}` with the content pycocotools.mask.encode gives (str, not bytes)."""
    return {"size": [int(height), int(width)], "counts": to_coco_string(_checked(counts, height, width))}


def _as_counts(counts: np.ndarray | list[int]) -> np.ndarray:
    runs = np.asarray(counts)
    if runs.ndim != 1:
        raise RLEError(f"counts must be 1-D, got shape {runs.shape}")
    if runs.size == 0:
        return np.zeros(0, np.uint32)
    if runs.dtype.kind not in "iu":
        raise RLEError(f"counts must be integers, got dtype {runs.dtype}")
    if runs.dtype.kind == "i" and runs.min() < 0:
        raise RLEError(f"counts must not be negative, got {runs.min()} at index {int(np.argmin(runs))}")
    if runs.max() > _UINT32_MAX:
        raise RLEError(f"counts must fit in uint32, got {runs.max()} at index {int(np.argmax(runs))}")
    return runs.astype(np.uint32)


def _checked(counts: np.ndarray | list[int], height: int, width: int) -> np.ndarray:
    """Counts as int64 after checking they cover a height × width image exactly."""
    if height < 0 or width < 0:
        raise RLEError(f"mask size must not be negative, got {height}×{width}")
    runs = _as_counts(counts).astype(np.int64)
    if runs.sum() != height * width:
        raise RLEError(f"counts sum to {runs.sum()} but a {height}×{width} mask has {height * width} pixels")
    return runs
