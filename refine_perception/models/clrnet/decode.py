"""From CLRNet's output (192 lanes x 78 values of one image) to lanes in the original camera image, as
the official `get_lanes` / `predictions_to_pred` do it.

Steps: lane score = softmax of the two logits; keep scores >= conf_threshold; lane NMS (`lane_nms`);
round the length to whole rows; keep rows start..start+length-1 plus, below the start, the rows whose x
stays inside the image all the way down from the start ("extend to bottom": a lane seen from mid-image
usually continues to the bottom edge; a length below 1 also cuts those rows from start + length on, as
the official slice does); map each row back through the resize and the crop of the top
`cut_height` rows. Points are returned bottom to top, (x, y) in pixels, the project's lane layout.

Mapping x: the official code multiplies the normalised x (x_input / (img_w - 1)) by the original width,
not width - 1; we keep that so our lanes match the published numbers (the difference is under a pixel).
A length so negative that the official slice `xs[end + 1:]` would wrap around is treated as empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from scipy.interpolate import InterpolatedUnivariateSpline

from refine_perception.models.clrnet.lane_nms import lane_nms
from refine_perception.models.clrnet.priors import IMG_W, LANE_FIELDS, N_STRIPS, NUM_POINTS, prior_ys

SPLINE_MARGIN = 0.01  # the official spline is evaluated up to 1 % of the image height past its end points
CULANE_ROWS = np.arange(270, 590, 8)

SampleMethod = Literal["spline", "linear"]


@dataclass(frozen=True)
class DecodeSettings:
    """Post-processing parameters; the defaults are CLRNet's CULane configuration."""

    ori_width: int = 1640
    ori_height: int = 590
    cut_height: int = 270
    conf_threshold: float = 0.4
    nms_threshold: float = 50.0
    max_lanes: int = 4
    img_w: int = IMG_W

    def __post_init__(self) -> None:
        if self.ori_width <= 0 or self.ori_height <= 0:
            raise ValueError(f"original size must be positive, got {self.ori_width}x{self.ori_height}")
        if not 0 <= self.cut_height < self.ori_height:
            raise ValueError(f"cut_height must be in [0, {self.ori_height}), got {self.cut_height}")


class DecodedLanes(NamedTuple):
    """Lanes of one image as (N, 2) (x, y) points of the original image, bottom to top, best first,
    their scores, and each lane's row in the network output (to read its type and colour)."""

    lanes: list[np.ndarray]
    scores: np.ndarray
    indices: np.ndarray


def lane_scores(logits: np.ndarray) -> np.ndarray:
    """softmax(logits)[:, 1] written as a sigmoid of the difference, which cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * (logits[:, 1] - logits[:, 0])))


def visible_rows(xs: np.ndarray, start_y: np.ndarray, length_rows: np.ndarray) -> np.ndarray:
    """(L, 72) bool: rows of each lane that decode to a point. xs normalised (L, 72); length in rows."""
    rows = np.arange(NUM_POINTS)
    start = np.clip(np.round(start_y * N_STRIPS), 0, N_STRIPS).astype(np.int64)[:, None]
    end = np.minimum(start + np.round(length_rows).astype(np.int64)[:, None] - 1, N_STRIPS)
    below = rows < start
    inside = (xs >= 0) & (xs <= 1)
    # rows below the start count only while every row between them and the start is inside the image;
    # rows from the start up are all True here
    reach = np.flip(np.cumprod(np.flip(inside | ~below, axis=1), axis=1), axis=1).astype(bool)
    return reach & (rows <= end) & (xs >= 0)


def decode_lanes(
    predictions: torch.Tensor | np.ndarray, settings: DecodeSettings = DecodeSettings()
) -> DecodedLanes:
    """The lanes of one image's predictions (P, 78), as the head outputs them, at the prior rows."""
    if isinstance(predictions, torch.Tensor):
        predictions = predictions.detach().cpu().double().numpy()
    lanes_in = np.asarray(predictions, dtype=np.float64)
    if lanes_in.ndim != 2 or lanes_in.shape[1] != LANE_FIELDS:
        raise ValueError(f"predictions must have shape (P, {LANE_FIELDS}), got {lanes_in.shape}")
    if not np.isfinite(lanes_in).all():
        raise ValueError("predictions contain NaN or infinite values")

    scores = lane_scores(lanes_in[:, :2])
    confident = scores >= settings.conf_threshold
    rows = np.flatnonzero(confident)
    lanes_in, scores = lanes_in[confident], scores[confident]
    keep = lane_nms(
        scores,
        lanes_in[:, 2],
        lanes_in[:, 5] * N_STRIPS,
        lanes_in[:, 6:] * (settings.img_w - 1),
        thr=settings.nms_threshold,
        top_k=settings.max_lanes,
    )
    lanes_in, scores, rows = lanes_in[keep], scores[keep], rows[keep]

    xs = lanes_in[:, 6:]
    visible = visible_rows(xs, lanes_in[:, 2], lanes_in[:, 5] * N_STRIPS)
    ys = prior_ys().double().numpy()
    cropped = settings.ori_height - settings.cut_height
    x_px = xs * settings.ori_width
    y_px = np.broadcast_to(ys * cropped + settings.cut_height, xs.shape)
    lanes: list[np.ndarray] = []
    kept: list[int] = []
    for k, (lane_x, lane_y, mask) in enumerate(zip(x_px, y_px, visible)):
        if mask.sum() > 1:
            lanes.append(np.stack([lane_x[mask], lane_y[mask]], axis=1))
            kept.append(k)
    return DecodedLanes(lanes, scores[kept].astype(np.float64), rows[kept].astype(np.int64))


def sample_lane(
    lane: np.ndarray, rows: np.ndarray, ori_width: int, ori_height: int, method: SampleMethod = "spline"
) -> np.ndarray:
    """The lane's points at the given image rows (e.g. `CULANE_ROWS`, TuSimple's h_samples), (K, 2),
    bottom to top; rows the lane does not reach, or where x leaves [0, ori_width), are left out.

    "spline" is the official choice (cubic interpolating spline x(y), degree min(3, n - 1), evaluated up
    to 1 % of the height past the end points): use it to reproduce published scores. "linear" joins
    the points with straight segments and never extrapolates: it cannot overshoot between rows, which
    suits drawing and downstream geometry.
    """
    lane = np.asarray(lane, dtype=np.float64)
    if lane.ndim != 2 or lane.shape[1] != 2 or lane.shape[0] < 2:
        raise ValueError(f"lane must be an (N, 2) array with N >= 2, got shape {lane.shape}")
    rows = np.sort(np.asarray(rows, dtype=np.float64))[::-1]
    y_up = lane[::-1, 1]  # top to bottom: y increasing, as the interpolators need
    x_up = lane[::-1, 0]
    if not np.all(np.diff(y_up) > 0):
        raise ValueError("lane points must be ordered bottom to top with strictly decreasing y")
    if method == "spline":
        margin = SPLINE_MARGIN * ori_height
        reach = (rows >= y_up[0] - margin) & (rows <= y_up[-1] + margin)
        xs = InterpolatedUnivariateSpline(y_up, x_up, k=min(3, len(y_up) - 1))(rows)
    elif method == "linear":
        reach = (rows >= y_up[0]) & (rows <= y_up[-1])
        xs = np.interp(rows, y_up, x_up)
    else:
        raise ValueError(f"method must be 'spline' or 'linear', got {method!r}")
    valid = reach & (xs >= 0) & (xs < ori_width)
    return np.stack([xs[valid], rows[valid]], axis=1)
