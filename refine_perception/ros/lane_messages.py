"""What the lanes node publishes: LaneArray from one frame's prediction, RViz markers and a debug image.

Every float32 field is rounded to float32 before it is stored, so a LaneArray compares equal to itself
after a trip through serialisation. Point arrays are lists of Point32 built with the public constructor:
rclpy has no bulk path for a sequence of messages (about 1 µs a point; writing the generated class's
private slots would be five times faster but ties us to rosidl internals, for a tenth of a millisecond
a lane).

Type colours come from the Okabe–Ito palette, chosen to stay distinct under the common colour-vision
deficiencies; the markers and the debug image use the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from geometry_msgs.msg import Point, Point32, Pose, Vector3
from rclpy.duration import Duration
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from refine_msgs.msg import Lane, LaneArray
from refine_perception.data.synthetic.road import RoadSample
from refine_perception.lanes.ground import LaneFit, LaneGeometryError, fit_ground, fit_image, lane_points
from refine_perception.models.clrnet.head import LANE_COLORS, LANE_TYPES
from refine_perception.models.clrnet.predict import LanePrediction
from refine_perception.ros.image_messages import to_bgr
from refine_perception.ros.messages import calibration_from_info

if TYPE_CHECKING:  # the pipeline brings the backends; what converts messages needs only its interface
    from refine_perception.lanes.pipeline import LaneFrame, LanePipeline

# the network's class index -> Lane.msg constant, matched by name so a reordering cannot mislabel lanes
TYPE_CODES = np.array([getattr(Lane, f"TYPE_{name.upper()}") for name in LANE_TYPES], dtype=np.uint8)
COLOR_CODES = np.array([getattr(Lane, f"COLOR_{name.upper()}") for name in LANE_COLORS], dtype=np.uint8)
TYPE_NAMES = {int(code): name for code, name in zip(TYPE_CODES, LANE_TYPES)}

# RGB per Lane.TYPE_*; codes outside the table are drawn as unknown
TYPE_PALETTE: dict[int, tuple[int, int, int]] = {
    Lane.TYPE_UNKNOWN: (153, 153, 153),  # grey
    Lane.TYPE_SOLID: (86, 180, 233),  # sky blue
    Lane.TYPE_DASHED: (230, 159, 0),  # orange
    Lane.TYPE_DOUBLE: (204, 121, 167),  # reddish purple
    Lane.TYPE_ROAD_EDGE: (0, 158, 115),  # bluish green
}

ATTRIBUTES = ("scores", "types", "type_scores", "colors", "color_scores")  # LanePrediction's per-lane arrays
LANES_NS = "lanes"
LABELS_NS = "labels"


def _f32(value: float) -> float:
    return float(np.float32(value))


def _point32s(points: np.ndarray) -> list[Point32]:
    """Point32 of (N, 2) or (N, 3) points (z = 0 for two columns)."""
    xyz = np.zeros((len(points), 3), dtype=np.float32)
    xyz[:, : points.shape[1]] = points
    return [Point32(x=x, y=y, z=z) for x, y, z in xyz.tolist()]


def _xyz(points: Sequence[Point32]) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in points], dtype=np.float64).reshape(-1, 3)


def _lane_attributes(prediction: LanePrediction, count: int) -> dict[str, np.ndarray]:
    """The prediction's per-lane arrays by field name, checked: one finite value per lane, and class
    indices (as int64) within the head's classes."""
    arrays = {name: getattr(prediction, name) for name in ATTRIBUTES}
    wrong = ", ".join(f"{name} {np.shape(a)}" for name, a in arrays.items() if np.shape(a) != (count,))
    if wrong:
        raise LaneGeometryError(f"prediction arrays must have shape ({count},) for {count} lanes, got {wrong}")
    table = np.column_stack(list(arrays.values())).reshape(count, len(ATTRIBUTES))
    columns = dict(zip(ATTRIBUTES, lane_points(table, (len(ATTRIBUTES),), "prediction scores and classes").T))
    for name, classes in (("types", len(LANE_TYPES)), ("colors", len(LANE_COLORS))):
        if ((columns[name] < 0) | (columns[name] >= classes) | (columns[name] % 1 != 0)).any():
            raise LaneGeometryError(f"prediction.{name} must hold class indices in [0, {classes}), got {columns[name]}")
        columns[name] = columns[name].astype(np.int64)
    return columns


def _fit(image: np.ndarray, ground: np.ndarray | None) -> tuple[int, LaneFit | None]:
    """The ground fit where the lane has one, else the image fit; FIT_NONE when neither is possible."""
    fit = None if ground is None else fit_ground(ground)
    if fit is not None:
        return Lane.FIT_GROUND, fit
    fit = fit_image(image)
    return (Lane.FIT_NONE, None) if fit is None else (Lane.FIT_IMAGE, fit)


def lane_array(
    header: Header,
    image_size: tuple[int, int],
    prediction: LanePrediction,
    ids: Sequence[int] | None = None,
    ground_lanes: Sequence[object] | None = None,
    ground_frame_id: str = "",
) -> LaneArray:
    """The LaneArray of one frame, lanes ordered left to right by the column of their lowest point.

    `image_size` is (height, width) of the source image, as in `image.shape[:2]`; `ids` are the
    tracker's ids in prediction order (None: untracked, track_id -1); `ground_lanes` are the lanes'
    road-plane points from `project_lanes`, in prediction order, given together with the frame they
    are in, or neither when there is no camera model.
    """
    height, width = image_size
    if not all(isinstance(n, (int, np.integer)) and n > 0 for n in (height, width)):
        raise LaneGeometryError(f"image_size must be positive (height, width), got {image_size}")
    count = len(prediction.lanes)
    attributes = _lane_attributes(prediction, count)
    types, colors = TYPE_CODES[attributes["types"]], COLOR_CODES[attributes["colors"]]
    if ids is not None and len(ids) != count:
        raise LaneGeometryError(f"{len(ids)} track ids for {count} lanes")
    if (ground_lanes is None) != (not ground_frame_id):
        raise LaneGeometryError("ground_lanes and ground_frame_id must be given together (or neither)")
    if ground_lanes is not None and len(ground_lanes) != count:
        raise LaneGeometryError(f"{len(ground_lanes)} ground lanes for {count} lanes")

    image = [lane_points(lane, (2,), f"lane {k}") for k, lane in enumerate(prediction.lanes)]
    if any(len(lane) == 0 for lane in image):
        raise LaneGeometryError("every lane needs at least one image point")
    ground = None if ground_lanes is None else [
        lane_points(lane, (2, 3), f"ground lane {k}") for k, lane in enumerate(ground_lanes)
    ]
    bottom_x = [lane[np.argmax(lane[:, 1]), 0] for lane in image]

    lanes = []
    for k in np.argsort(bottom_x, kind="stable"):
        fit_space, fit = _fit(image[k], None if ground is None else ground[k])
        lanes.append(Lane(
            track_id=-1 if ids is None else int(ids[k]),
            score=_f32(attributes["scores"][k]),
            type=int(types[k]),
            type_score=_f32(attributes["type_scores"][k]),
            color=int(colors[k]),
            color_score=_f32(attributes["color_scores"][k]),
            image_points=_point32s(image[k]),
            ground_points=[] if ground is None else _point32s(ground[k]),
            fit_space=fit_space,
            fit_coeffs=[] if fit is None else fit.coeffs.astype(np.float32).tolist(),
            fit_t_min=0.0 if fit is None else _f32(fit.t_min),
            fit_t_max=0.0 if fit is None else _f32(fit.t_max),
        ))  # fmt: skip
    return LaneArray(
        header=header, image_height=int(height), image_width=int(width), ground_frame_id=ground_frame_id, lanes=lanes
    )


def lanes_from_messages(pipeline: LanePipeline, msg: Image | CompressedImage,
                        info: CameraInfo | None = None) -> tuple[LaneArray, LaneFrame]:
    """One frame's messages through the lane pipeline, as the lane_detector node and the offline replay
    both run it: the image decoded (zero-copy for bgr8; ImageFormatError when bad), the CameraInfo's
    contents handed over as they are, and the LaneArray under the image's header."""
    image = to_bgr(msg, pipeline.settings.max_image_pixels)
    frame = pipeline(image, None if info is None else calibration_from_info(info))
    lanes = lane_array(msg.header, image.shape[:2], frame.prediction, frame.ids, frame.ground, frame.ground_frame)
    return lanes, frame


def truth_lane_array(
    header: Header,
    image_size: tuple[int, int],
    lanes: Sequence[np.ndarray],
    types: Sequence[int],
    colors: Sequence[int],
    ids: Sequence[int] | None = None,
    ground_lanes: Sequence[np.ndarray] | None = None,
    ground_frame_id: str = "",
) -> LaneArray:
    """Annotated lanes as a LaneArray (scores 1): `types` / `colors` index LANE_TYPES / LANE_COLORS, and
    an unlabelled attribute (-1) becomes TYPE_UNKNOWN / COLOR_UNKNOWN."""
    ones = np.ones(len(lanes))
    truth = LanePrediction(
        lanes=list(lanes),
        scores=ones,
        types=np.maximum(np.asarray(types, dtype=np.int64).reshape(-1), 0),
        type_scores=ones,
        colors=np.maximum(np.asarray(colors, dtype=np.int64).reshape(-1), 0),
        color_scores=ones,
    )
    return lane_array(header, image_size, truth, ids, ground_lanes, ground_frame_id)


def ground_truth_lanes(header: Header, sample: RoadSample, ground_frame_id: str) -> LaneArray:
    """The synthetic generator's exact lanes of `sample`: track ids are the generator's stable boundary
    ids, and road edges (no paint) get COLOR_UNKNOWN."""
    return truth_lane_array(
        header, sample.image.shape[:2], [lane.image_points for lane in sample.lanes],
        [LANE_TYPES.index(lane.kind) for lane in sample.lanes],
        [LANE_COLORS.index(lane.colour) if lane.colour in LANE_COLORS else 0 for lane in sample.lanes],
        [lane.id for lane in sample.lanes], [lane.ground_points for lane in sample.lanes], ground_frame_id)


def lane_label(lane: Lane) -> str:
    """"<track id> <type> <score>", the id left out for untracked lanes."""
    text = f"{TYPE_NAMES.get(lane.type, 'unknown')} {lane.score:.2f}"
    return text if lane.track_id < 0 else f"{lane.track_id} {text}"


def type_rgb(lane_type: int) -> tuple[int, int, int]:
    return TYPE_PALETTE.get(lane_type, TYPE_PALETTE[Lane.TYPE_UNKNOWN])


def lane_markers(
    lanes: LaneArray,
    image_frame: str = "lane_image",
    metres_per_pixel: float = 0.01,
    line_width: float = 0.1,
    text_height: float = 0.5,
    lifetime: float = 0.0,
) -> MarkerArray:
    """RViz markers for a LaneArray, stamped with its image's stamp: a DELETEALL, then per lane a
    LINE_STRIP (namespace "lanes") coloured by type and a TEXT_VIEW_FACING label (namespace "labels")
    above its far end; both take the lane's index in the array as id. A lane with fewer than two
    points to draw is left out. Sizes are metres; `lifetime` is seconds (0: until replaced, which the
    DELETEALL leading every array does).

    With a ground frame in the array the ground points are drawn there. Without one the lanes are a
    flat picture of the image in `image_frame`: origin at its top-left corner, x = column *
    metres_per_pixel to the right, y = -row * metres_per_pixel (rows run down), z = 0; seen from above
    with x to the right it reads like the camera image, not mirrored.
    """
    if not image_frame:
        raise LaneGeometryError("image_frame must not be empty")
    for name, value in (("metres_per_pixel", metres_per_pixel), ("line_width", line_width),
                        ("text_height", text_height)):
        if not (np.isfinite(value) and value > 0):
            raise LaneGeometryError(f"{name} must be a positive number, got {value}")
    if not (np.isfinite(lifetime) and lifetime >= 0):
        raise LaneGeometryError(f"lifetime must be >= 0 seconds, got {lifetime}")
    on_ground = bool(lanes.ground_frame_id)
    header = Header(stamp=lanes.header.stamp, frame_id=lanes.ground_frame_id if on_ground else image_frame)
    lifetime = Duration(nanoseconds=round(lifetime * 1e9)).to_msg()
    up = np.array([0.0, 0.0, text_height] if on_ground else [0.0, text_height, 0.0])
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for k, lane in enumerate(lanes.lanes):
        if on_ground:
            xyz = _xyz(lane.ground_points)
        else:
            xyz = _xyz(lane.image_points) * [metres_per_pixel, -metres_per_pixel, 0.0]
        if len(xyz) < 2:
            continue
        r, g, b = (c / 255 for c in type_rgb(lane.type))
        colour = ColorRGBA(r=r, g=g, b=b, a=1.0)
        markers.append(Marker(
            header=header, ns=LANES_NS, id=k, type=Marker.LINE_STRIP, action=Marker.ADD, lifetime=lifetime,
            scale=Vector3(x=line_width), color=colour,
            points=[Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()],
        ))  # fmt: skip
        x, y, z = (xyz[-1] + up).tolist()
        markers.append(Marker(
            header=header, ns=LABELS_NS, id=k, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, lifetime=lifetime,
            pose=Pose(position=Point(x=x, y=y, z=z)), scale=Vector3(z=text_height), color=colour,
            text=lane_label(lane),
        ))  # fmt: skip
    return MarkerArray(markers=markers)


def draw_overlay(image_bgr: np.ndarray, lanes: LaneArray, thickness: int = 3, font_scale: float = 0.6) -> np.ndarray:
    """A copy of the source image with the lanes drawn as anti-aliased polylines coloured by type
    (one cv2.polylines call per colour), each labelled beside its lowest point on the side the lane
    leans away from: the far ends crowd together at the vanishing point, the near ends are spread
    across the image."""
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise LaneGeometryError(f"image must be BGR uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[:2] != (lanes.image_height, lanes.image_width):
        raise LaneGeometryError(
            f"image is {image.shape[1]}x{image.shape[0]} but the lanes are for "
            f"{lanes.image_width}x{lanes.image_height}"
        )
    if thickness < 1 or not font_scale > 0:
        raise LaneGeometryError(f"thickness must be >= 1 and font_scale > 0, got {thickness} and {font_scale}")
    out = image.copy()
    points = [_xyz(lane.image_points)[:, :2] for lane in lanes.lanes]
    by_colour: dict[tuple[int, int, int], list[np.ndarray]] = {}
    for lane, xy in zip(lanes.lanes, points):
        by_colour.setdefault(type_rgb(lane.type)[::-1], []).append(np.round(xy * 16).astype(np.int32))
    for bgr, polylines in by_colour.items():
        cv2.polylines(out, polylines, False, bgr, thickness, cv2.LINE_AA, shift=4)  # 4 fractional bits

    font = cv2.FONT_HERSHEY_SIMPLEX
    weight = max(1, thickness // 2)
    for lane, xy in zip(lanes.lanes, points):
        if not len(xy):
            continue
        text = lane_label(lane)
        (w, h), baseline = cv2.getTextSize(text, font, font_scale, weight)
        bottom, top = xy[np.argmax(xy[:, 1])], xy[np.argmin(xy[:, 1])]
        gap = 2 * thickness
        x = bottom[0] - gap - w if top[0] > bottom[0] else bottom[0] + gap
        x = int(np.clip(x, 0, max(0, out.shape[1] - w)))
        y = int(np.clip(bottom[1] - baseline, h + 2, out.shape[0] - 1 - baseline))
        cv2.rectangle(out, (x, y - h - 2), (x + w, y + baseline), (0, 0, 0), cv2.FILLED)  # readable on any road
        cv2.putText(out, text, (x, y), font, font_scale, type_rgb(lane.type)[::-1], weight, cv2.LINE_AA)
    return out
