"""Fully populated refine_msgs messages for the transport tests: every field set to a value that is
exact in its wire type, so 'arrived intact' can be checked with ==."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Point32, Pose, Quaternion
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import ColorRGBA, Header

from refine_msgs.msg import ClassInfo, ClassMap, Instance, InstanceArray, Lane, LaneArray, MaskRLE, OrientedBox2D


def header() -> Header:
    return Header(stamp=Time(sec=1_700_000_123, nanosec=456_789_012), frame_id="camera_optical_frame")


def lane_array() -> LaneArray:
    lanes = []
    for i in range(3):
        lanes.append(
            Lane(
                track_id=i - 1,
                score=0.5 + i * 0.125,
                type=Lane.TYPE_DASHED if i else Lane.TYPE_ROAD_EDGE,
                type_score=0.75,
                color=Lane.COLOR_YELLOW if i == 2 else Lane.COLOR_WHITE,
                color_score=0.875,
                image_points=[Point32(x=100.5 + 10 * i + k, y=589.0 - 8 * k, z=0.0) for k in range(72)],
                ground_points=[Point32(x=2.0 + k, y=-1.75 + 3.5 * i, z=0.0) for k in range(40)],
                fit_space=Lane.FIT_GROUND,
                fit_coeffs=[-1.75 + 3.5 * i, 0.015625, -0.0009765625, 3.0517578125e-05],
                fit_t_min=2.0,
                fit_t_max=41.0,
            )
        )
    return LaneArray(header=header(), image_height=590, image_width=1640, ground_frame_id="base_link", lanes=lanes)


def instance_array() -> InstanceArray:
    instances = []
    for i in range(4):
        instances.append(
            Instance(
                id=i + 1,
                class_id=26 if i % 2 else 24,
                class_name="car" if i % 2 else "person",
                score=1.0 - i * 0.125,
                bbox=RegionOfInterest(x_offset=10 * i, y_offset=20 + i, height=30, width=40 + i, do_rectify=False),
                mask=MaskRLE(height=64, width=48, counts=[7 + i, 5, 100, 3, 64 * 48 - 115 - i]),
                has_oriented_box=bool(i % 2),
                oriented_box=OrientedBox2D(center_x=30.5, center_y=12.25, theta=0.5, length=40.0, width=6.5),
                has_grasp=i == 3,
                grasp_pose=Pose(
                    position=Point(x=0.125, y=-0.25, z=0.5), orientation=Quaternion(x=0.0, y=0.0, z=0.5, w=0.875)
                ),
                grasp_width=0.03125,
                grasp_score=0.625,
            )
        )
    return InstanceArray(header=header(), image_height=64, image_width=48, instances=instances)


def class_map() -> ClassMap:
    return ClassMap(
        header=header(),
        classes=[
            ClassInfo(id=7, name="road", is_thing=False, color=ColorRGBA(r=0.5, g=0.25, b=0.5, a=1.0)),
            ClassInfo(id=26, name="car", is_thing=True, color=ColorRGBA(r=0.0, g=0.0, b=0.5, a=1.0)),
        ],
        ignore_id=255,
    )


SAMPLES = {"lanes": lane_array, "instances": instance_array, "class_map": class_map}
