"""The lanes node's message layer: LaneArray, RViz markers and the debug overlay, on real message objects."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from refine_msgs.msg import Lane, LaneArray
from refine_perception.core.camera import PinholeCamera
from refine_perception.lanes.ground import LaneGeometryError, project_lanes
from refine_perception.models.clrnet.head import LANE_COLORS, LANE_TYPES
from refine_perception.models.clrnet.predict import LanePrediction
from refine_perception.ros.lane_messages import (
    COLOR_CODES,
    TYPE_CODES,
    TYPE_PALETTE,
    draw_overlay,
    lane_array,
    lane_label,
    lane_markers,
)

HEIGHT, WIDTH = 720, 1280
# fx = fy = 1000, principal point (640, 360), 1.5 m above a flat road, looking straight ahead: a ground
# point (x, y) is seen at u = 640 - 1000 y / x, v = 360 + 1500 / x
CAMERA = PinholeCamera(np.array([[1000.0, 0, 640], [0, 1000, 360], [0, 0, 1]]), WIDTH, HEIGHT, 1.5)
STATIONS = np.linspace(5.0, 40.0, 72)  # metres ahead, near to far: image rows bottom to top
OFFSETS = [1.75, -5.25, -1.75, 5.25]  # lateral y of each lane [m], in prediction order (not left to right)


def header() -> Header:
    return Header(stamp=Time(sec=1_700_000_000, nanosec=250_000_000), frame_id="camera_optical_frame")


def image_lane(y: float) -> np.ndarray:
    return np.column_stack([640 - 1000 * y / STATIONS, 360 + 1500 / STATIONS])


def prediction(lanes: list[np.ndarray] | None = None) -> LanePrediction:
    lanes = [image_lane(y) for y in OFFSETS] if lanes is None else lanes
    n = len(lanes)
    return LanePrediction(
        lanes=lanes,
        scores=np.array([0.75, 0.5, 0.875, 0.625])[:n],
        types=np.array([2, 4, 1, 3])[:n],
        type_scores=np.array([0.5, 0.625, 0.75, 0.875])[:n],
        colors=np.array([1, 0, 2, 1])[:n],
        color_scores=np.array([0.25, 0.375, 0.5, 0.625])[:n],
    )


def one_lane(**fields) -> LanePrediction:
    values = {"scores": [0.5], "types": [1], "type_scores": [0.5], "colors": [0], "color_scores": [0.5]} | fields
    return LanePrediction([image_lane(1.0)], **{name: np.array(v) for name, v in values.items()})


def xyz(points) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in points])


def ground_array() -> LaneArray:
    pred = prediction()
    return lane_array(header(), (HEIGHT, WIDTH), pred, [7, 3, 9, 5], project_lanes(CAMERA, pred.lanes), "base_link")


# ---------------------------------------------------------------------------------------------- LaneArray


def test_network_classes_are_the_message_constants():
    # the head's class lists were laid out to be Lane.msg's constants; the message layer relies on it by name
    assert [getattr(Lane, f"TYPE_{name.upper()}") for name in LANE_TYPES] == list(range(len(LANE_TYPES)))
    assert [getattr(Lane, f"COLOR_{name.upper()}") for name in LANE_COLORS] == list(range(len(LANE_COLORS)))
    assert TYPE_CODES.tolist() == [0, 1, 2, 3, 4] and COLOR_CODES.tolist() == [0, 1, 2]


def test_fields_and_left_to_right_order():
    pred = prediction()
    msg = lane_array(header(), (HEIGHT, WIDTH), pred)
    assert msg.header == header()
    assert (msg.image_height, msg.image_width, msg.ground_frame_id) == (HEIGHT, WIDTH, "")
    # left to right is decreasing y (left positive): prediction indices 3 (y 5.25), 0, 2, 1 (y -5.25)
    order = [3, 0, 2, 1]
    assert [lane.score for lane in msg.lanes] == [0.625, 0.75, 0.875, 0.5]
    assert [lane.type for lane in msg.lanes] == [Lane.TYPE_DOUBLE, Lane.TYPE_DASHED, Lane.TYPE_SOLID,
                                                 Lane.TYPE_ROAD_EDGE]
    assert [lane.type_score for lane in msg.lanes] == [0.875, 0.5, 0.75, 0.625]
    assert [lane.color for lane in msg.lanes] == [Lane.COLOR_WHITE, Lane.COLOR_WHITE, Lane.COLOR_YELLOW,
                                                  Lane.COLOR_UNKNOWN]
    assert [lane.color_score for lane in msg.lanes] == [0.625, 0.25, 0.5, 0.375]
    assert [lane.track_id for lane in msg.lanes] == [-1] * 4
    for lane, k in zip(msg.lanes, order):
        points = xyz(lane.image_points)
        np.testing.assert_array_equal(points[:, :2], pred.lanes[k].astype(np.float32))
        assert not points[:, 2].any() and lane.ground_points == []
    bottoms = [xyz(lane.image_points)[0, 0] for lane in msg.lanes]
    assert bottoms == sorted(bottoms)


def test_order_is_taken_at_the_bottom_of_each_lane():
    # lane 0 starts left and crosses to the right of lane 1 further up; its points are given top to bottom
    rows = np.linspace(700.0, 400.0, 10)
    first = np.column_stack([np.linspace(300, 900, 10), rows])[::-1]
    second = np.column_stack([np.full(10, 500.0), rows])
    msg = lane_array(header(), (HEIGHT, WIDTH), prediction([second, first]))
    assert [lane.score for lane in msg.lanes] == [0.5, 0.75]


def test_ids_follow_their_lanes():
    msg = lane_array(header(), (HEIGHT, WIDTH), prediction(), ids=[7, 3, 9, 5])
    assert [lane.track_id for lane in msg.lanes] == [5, 7, 9, 3]


def test_image_fit_without_ground():
    rows = np.linspace(700.0, 420.0, 36)
    lane = np.column_stack([100 + 0.5 * rows - 2e-4 * rows**2, rows])
    msg = lane_array(header(), (HEIGHT, WIDTH), prediction([lane]))
    fitted = msg.lanes[0]
    assert fitted.fit_space == Lane.FIT_IMAGE
    assert fitted.fit_coeffs.typecode == "f" and len(fitted.fit_coeffs) == 4
    np.testing.assert_allclose(fitted.fit_coeffs, [100, 0.5, -2e-4, 0], rtol=1e-4, atol=1e-6)
    assert (fitted.fit_t_min, fitted.fit_t_max) == (420.0, 700.0)


def test_ground_points_and_ground_fit():
    msg = ground_array()
    assert msg.ground_frame_id == "base_link"
    for lane, y in zip(msg.lanes, [5.25, 1.75, -1.75, -5.25]):
        assert lane.fit_space == Lane.FIT_GROUND
        ground = xyz(lane.ground_points)
        np.testing.assert_allclose(ground, np.column_stack([STATIONS, np.full(72, y), np.zeros(72)]), atol=1e-5)
        np.testing.assert_allclose(lane.fit_coeffs, [y, 0, 0, 0], atol=1e-5)
        np.testing.assert_allclose([lane.fit_t_min, lane.fit_t_max], [5.0, 40.0], rtol=1e-6)


def test_fit_falls_back_to_the_image_then_to_none():
    above_horizon = np.column_stack([np.linspace(600, 620, 5), np.linspace(350, 300, 5)])
    one_row = np.array([[900.0, 500.0], [950.0, 500.0]])
    pred = prediction([above_horizon, one_row])
    msg = lane_array(header(), (HEIGHT, WIDTH), pred, ground_lanes=project_lanes(CAMERA, pred.lanes),
                     ground_frame_id="base_link")
    assert msg.lanes[0].ground_points == [] and msg.lanes[0].fit_space == Lane.FIT_IMAGE
    np.testing.assert_allclose(msg.lanes[0].fit_coeffs[:2], [740, -0.4], rtol=1e-6)  # u = 740 - 0.4 v
    none = msg.lanes[1]
    assert none.fit_space == Lane.FIT_NONE and len(none.fit_coeffs) == 0
    assert (none.fit_t_min, none.fit_t_max) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ids": [1, 2]}, "2 track ids for 4 lanes"),
        ({"ground_lanes": [np.zeros((0, 3))] * 4}, "given together"),
        ({"ground_frame_id": "base_link"}, "given together"),
        ({"ground_lanes": [np.zeros((0, 3))] * 3, "ground_frame_id": "base_link"}, "3 ground lanes for 4"),
        ({"image_size": (0, 1280)}, "image_size must be positive"),
        ({"prediction": prediction([image_lane(1.0), np.array([[1.0, np.nan]])])}, "lane 1 contains NaN"),
        ({"prediction": prediction([np.zeros((0, 2))])}, "at least one image point"),
        ({"prediction": one_lane(types=[5])}, r"types must hold class indices in \[0, 5\)"),
        ({"prediction": one_lane(colors=[0.5])}, r"colors must hold class indices in \[0, 3\)"),
        ({"prediction": one_lane(scores=[0.5, 0.5])}, r"must have shape \(1,\) for 1 lanes, got scores \(2,\)"),
        ({"prediction": one_lane(color_scores=[np.nan])}, "scores and classes contains NaN"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    args = {"header": header(), "image_size": (HEIGHT, WIDTH), "prediction": prediction()} | kwargs
    with pytest.raises(LaneGeometryError, match=message):
        lane_array(**args)


def test_serialization_round_trip_keeps_every_field():
    msg = ground_array()
    assert all(len(lane.fit_coeffs) == 4 and len(lane.ground_points) == 72 for lane in msg.lanes)
    back = deserialize_message(serialize_message(msg), LaneArray)
    assert back == msg
    assert xyz(back.lanes[0].ground_points)[-1, 0] == np.float32(40.0)


# ----------------------------------------------------------------------------------------------- markers


def by_ns(markers: MarkerArray, ns: str) -> list[Marker]:
    return [m for m in markers.markers if m.ns == ns]


def test_ground_markers():
    msg = ground_array()
    markers = lane_markers(msg)
    first = markers.markers[0]
    assert first.action == Marker.DELETEALL and first.header.frame_id == "base_link"
    assert all(m.header.stamp == header().stamp and m.header.frame_id == "base_link" for m in markers.markers)
    lines, labels = by_ns(markers, "lanes"), by_ns(markers, "labels")
    assert len(markers.markers) == 1 + len(lines) + len(labels) and len(lines) == len(labels) == 4
    assert len({m.id for m in lines}) == len({m.id for m in labels}) == 4
    for line, label, lane in zip(lines, labels, msg.lanes):
        assert line.type == Marker.LINE_STRIP and line.action == Marker.ADD and line.scale.x == 0.1
        np.testing.assert_array_equal(xyz(line.points), xyz(lane.ground_points))
        rgb = np.array(TYPE_PALETTE[lane.type]) / 255
        np.testing.assert_allclose([line.color.r, line.color.g, line.color.b, line.color.a], [*rgb, 1], atol=1e-6)
        assert label.type == Marker.TEXT_VIEW_FACING and label.color == line.color and label.scale.z == 0.5
        far = xyz(lane.ground_points)[-1]
        position = label.pose.position
        np.testing.assert_allclose([position.x, position.y, position.z], far + [0, 0, 0.5])
    assert [m.text for m in labels] == ["5 double 0.62", "7 dashed 0.75", "9 solid 0.88", "3 road_edge 0.50"]


def test_palette_tells_every_type_apart():
    colours = {TYPE_PALETTE[getattr(Lane, f"TYPE_{name.upper()}")] for name in LANE_TYPES}
    assert len(colours) == len(LANE_TYPES)


def test_image_plane_markers_without_ground():
    msg = lane_array(header(), (HEIGHT, WIDTH), prediction())
    markers = lane_markers(msg, image_frame="lane_view", metres_per_pixel=0.01, text_height=0.25, lifetime=0.25)
    assert markers.markers[0].action == Marker.DELETEALL
    assert {m.header.frame_id for m in markers.markers} == {"lane_view"}
    lines, labels = by_ns(markers, "lanes"), by_ns(markers, "labels")
    assert [m.id for m in lines] == [m.id for m in labels] == [0, 1, 2, 3]
    for line, label, lane in zip(lines, labels, msg.lanes):
        uv = xyz(lane.image_points)[:, :2]
        np.testing.assert_allclose(xyz(line.points), np.column_stack([uv[:, 0] / 100, -uv[:, 1] / 100, 0 * uv[:, 0]]),
                                   rtol=1e-6)
        position = label.pose.position
        np.testing.assert_allclose([position.x, position.y, position.z], [uv[-1, 0] / 100, -uv[-1, 1] / 100 + 0.25, 0])
        assert (line.lifetime.sec, line.lifetime.nanosec) == (0, 250_000_000)
    assert [m.text for m in labels] == ["double 0.62", "dashed 0.75", "solid 0.88", "road_edge 0.50"]


def test_lanes_too_short_to_draw_are_left_out():
    pred = prediction([image_lane(1.0), np.column_stack([np.linspace(600, 620, 5), np.linspace(350, 300, 5)])])
    msg = lane_array(header(), (HEIGHT, WIDTH), pred, None, project_lanes(CAMERA, pred.lanes), "base_link")
    markers = lane_markers(msg)
    assert len(msg.lanes) == 2 and msg.lanes[1].ground_points == []  # above the horizon, lane 1 from the left
    assert [(m.ns, m.id) for m in markers.markers[1:]] == [("lanes", 0), ("labels", 0)]


@pytest.mark.parametrize(
    ("field", "message"),
    [({"metres_per_pixel": 0.0}, "metres_per_pixel must be a positive"), ({"line_width": -1.0}, "line_width"),
     ({"lifetime": float("nan")}, "lifetime must be >= 0"), ({"image_frame": ""}, "image_frame must not be empty")],
)
def test_bad_marker_parameters(field, message):
    with pytest.raises(LaneGeometryError, match=message):
        lane_markers(ground_array(), **field)


def test_label_text():
    assert lane_label(Lane(track_id=12, type=Lane.TYPE_ROAD_EDGE, score=0.25)) == "12 road_edge 0.25"
    assert lane_label(Lane(track_id=-1, type=200, score=1.0)) == "unknown 1.00"


# ----------------------------------------------------------------------------------------------- overlay


def vertical_lanes() -> LaneArray:
    rows = np.linspace(199.0, 40.0, 20)
    dashed = np.column_stack([np.full(20, 100.0), rows])
    road_edge = np.column_stack([np.full(20, 200.0), rows])
    return lane_array(header(), (200, 300), prediction([dashed, road_edge]), ids=[4, 8])


def test_overlay_draws_lanes_in_their_type_colour():
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, 290:] = 40
    before = image.copy()
    out = draw_overlay(image, vertical_lanes())
    np.testing.assert_array_equal(image, before)
    assert out is not image and out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[150, 100], TYPE_PALETTE[Lane.TYPE_DASHED][::-1])
    np.testing.assert_array_equal(out[150, 200], TYPE_PALETTE[Lane.TYPE_ROAD_EDGE][::-1])
    # away from the lines and labels nothing changes
    np.testing.assert_array_equal(out[:170, 130:170], image[:170, 130:170])
    np.testing.assert_array_equal(out[:170, 285:], image[:170, 285:])
    # anti-aliased edges: intermediate values next to the line
    assert len(np.unique(out[150, 90:111, 2])) > 2
    # labels sit beside the near ends (row 199; right of a vertical lane), clear of the lanes
    assert (out[170:, 110:180] != 0).any() and not (out[:170, 110:180] != 0).any()
    assert not (out[:, :95] != 0).any()


def test_overlay_checks_the_image():
    lanes = vertical_lanes()
    with pytest.raises(LaneGeometryError, match="image is 301x200 but the lanes are for 300x200"):
        draw_overlay(np.zeros((200, 301, 3), np.uint8), lanes)
    with pytest.raises(LaneGeometryError, match="BGR uint8"):
        draw_overlay(np.zeros((200, 300), np.uint8), lanes)


def test_a_frame_without_lanes():
    empty = LanePrediction([], np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))
    msg = lane_array(header(), (HEIGHT, WIDTH), empty, [], [], "base_link")
    assert msg.lanes == [] and msg.ground_frame_id == "base_link"
    assert [m.action for m in lane_markers(msg).markers] == [Marker.DELETEALL]  # clears the last frame's lanes
    image = np.full((HEIGHT, WIDTH, 3), 7, np.uint8)
    np.testing.assert_array_equal(draw_overlay(image, msg), image)
