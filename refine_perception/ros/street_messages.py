"""What the street node publishes: the label image (mono8 Cityscapes label ids, under the camera image's
header), the ClassMap that names those ids (latched), the InstanceArray of the cars and persons with their
track ids, RViz markers of their outlines, and a colour overlay.

Markers need the camera: an outline is drawn on the plane one metre in front of the camera (the rays
through its pixels), which RViz shows lying over the image when looking through the camera; without a
usable CameraInfo the array only clears what was drawn before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from geometry_msgs.msg import Point, Pose, Vector3
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from refine_msgs.msg import ClassInfo, ClassMap, InstanceArray
from refine_perception.data.formats.cityscapes import color_table, colorize
from refine_perception.instances.result import InstanceResult
from refine_perception.ros.image_messages import numpy_to_image, to_bgr
from refine_perception.ros.instance_messages import draw_instances, instance_array

if TYPE_CHECKING:  # the pipeline brings torch; what converts messages needs only its interface
    from refine_perception.segmentation.pipeline import StreetFrame, StreetPipeline

OUTLINES_NS = "street_outlines"
LABELS_NS = "street_labels"
OUTLINE_TOLERANCE_PX = 1.5  # polygon simplification of an outline
OVERLAY_ALPHA = 0.5


def label_image(header: Header, label_ids: np.ndarray) -> Image:
    """The mono8 label image of a frame under the camera image's header."""
    return numpy_to_image(np.ascontiguousarray(label_ids, np.uint8), "mono8", header)


def class_map(header: Header, class_names: Sequence[str], label_ids: Sequence[int], things: Sequence[str],
              void_id: int) -> ClassMap:
    """The ClassMap of a model: each class's label id, name, whether it has instances and its Cityscapes colour."""
    table = color_table()
    classes = []
    for name, ident in zip(class_names, label_ids):
        b, g, r = (int(c) / 255 for c in table[ident])
        classes.append(ClassInfo(id=int(ident), name=name, is_thing=name in things,
                                 color=ColorRGBA(r=r, g=g, b=b, a=1.0)))
    return ClassMap(header=header, classes=classes, ignore_id=int(void_id))


def street_from_messages(pipeline: StreetPipeline,
                         msg: Image | CompressedImage) -> tuple[Image, InstanceArray, StreetFrame]:
    """One camera image through the street pipeline, as the node and offline tools both run it: decoded
    (ImageFormatError when bad), then the label image and the InstanceArray under its header."""
    image = to_bgr(msg, pipeline.settings.max_image_pixels)
    frame = pipeline(image)
    instances = instance_array(msg.header, image.shape[:2], frame.results, frame.track_ids)
    return label_image(msg.header, frame.label_ids), instances, frame


def draw_street(frame: StreetFrame) -> np.ndarray:
    """The image under its label map in Cityscapes colours, each instance tinted on top with its score."""
    blended = cv2.addWeighted(frame.image, 1 - OVERLAY_ALPHA, colorize(frame.label_ids), OVERLAY_ALPHA, 0)
    return draw_instances(blended, frame.results)


def street_markers(instances: InstanceArray, results: Sequence[InstanceResult], K: np.ndarray | None) -> MarkerArray:
    """A DELETEALL, then with the camera matrix `K` per instance a LINE_STRIP along its mask's outer
    outline and a TEXT_VIEW_FACING "<class> <id>" above it, in the array's header frame on the plane z = 1 m
    (the instance's index in the array is the marker id; colours: Cityscapes'). `results` are the frame's
    instances the array was made of (their masks, not decoded again from the array)."""
    header = Header(stamp=instances.header.stamp, frame_id=instances.header.frame_id)
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    if K is None:
        return MarkerArray(markers=markers)
    table = color_table()
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    in_array_order = sorted(results, key=lambda r: -r.score)  # instance_array's (stable) order
    for k, (msg, result) in enumerate(zip(instances.instances, in_array_order)):
        contours, _ = cv2.findContours(result.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        outline = cv2.approxPolyDP(max(contours, key=cv2.contourArea), OUTLINE_TOLERANCE_PX, True)[:, 0, :]
        points = [Point(x=float((u - cx) / fx), y=float((v - cy) / fy), z=1.0) for u, v in outline]
        b, g, r = (int(c) / 255 for c in table[int(msg.class_id)])
        colour = ColorRGBA(r=r, g=g, b=b, a=1.0)
        markers.append(Marker(header=header, ns=OUTLINES_NS, id=k, type=Marker.LINE_STRIP, action=Marker.ADD,
                              color=colour, scale=Vector3(x=0.003), points=[*points, points[0]]))
        top = min(points, key=lambda p: p.y)
        markers.append(Marker(header=header, ns=LABELS_NS, id=k, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                              color=colour, scale=Vector3(z=0.02), text=f"{msg.class_name} {msg.id}",
                              pose=Pose(position=Point(x=top.x, y=top.y - 0.02, z=1.0))))
    return MarkerArray(markers=markers)
