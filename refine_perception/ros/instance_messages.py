"""What the instance node publishes: the InstanceArray of one frame's `InstanceResult`s and back, the
grasps alone as a PoseArray (what MoveIt and pick-and-place pipelines take), RViz markers of the grasps,
and a debug overlay.

The message keeps what `InstanceResult` holds: masks as exact run-length codes, the oriented box, and
the grasp as a pose whose x axis is the closing direction and z axis the approach, so the two vectors
travel as one orientation a robot can use as it is. `instance_results` inverts `instance_array` (up to
float32 for scores and widths, and the order, which is by decreasing score), so the scorer, the report
and the tests read published and recorded arrays with the same code. Colours are the Okabe–Ito
palette, as for lanes: distinct under the common colour-vision deficiencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from geometry_msgs.msg import Point, Pose, PoseArray, Quaternion, Vector3
from rclpy.duration import Duration
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from refine_msgs.msg import Instance, InstanceArray, MaskRLE, OrientedBox2D
from refine_perception.core import rle
from refine_perception.core.image_codec import ImageFormatError
from refine_perception.instances.result import Grasp, InstanceResult, OrientedBox
from refine_perception.ros.image_messages import depth_to_metres, to_bgr
from refine_perception.ros.messages import calibration_from_info

if TYPE_CHECKING:  # the pipeline brings torch; what converts messages needs only its interface
    from refine_perception.instances.pipeline import InstanceFrame, InstancePipeline

# RGB, Okabe–Ito without black: masks cycle through them in the order given
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167),
)
GRASP_OK_RGB = (0, 158, 115)  # bluish green: a grasp at or above the score threshold
GRASP_DOUBTFUL_RGB = (213, 94, 0)  # vermillion: below it
APPROACH_NS = "grasp_approach"
JAWS_NS = "grasp_jaws"
LABELS_NS = "grasp_labels"
UNIT_TOLERANCE = 1e-6


def _f32(value: float) -> float:
    return float(np.float32(value))


def _image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    height, width = image_size
    if not all(isinstance(n, (int, np.integer)) and n > 0 for n in (height, width)):
        raise ValueError(f"image_size must be positive (height, width), got {image_size}")
    return int(height), int(width)


def _check_mask(mask: np.ndarray, size: tuple[int, int], where: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != size:
        raise ValueError(f"{where}: mask must be bool {size[0]}x{size[1]} (the image), got {mask.dtype} {mask.shape}")
    return mask


def grasp_rotation(grasp: Grasp, where: str = "grasp") -> np.ndarray:
    """The grasp frame as a rotation matrix: columns closing, approach x closing, approach; the two
    vectors must be unit and perpendicular (a clear error otherwise, not a silently repaired pose)."""
    x, z = np.asarray(grasp.closing, np.float64), np.asarray(grasp.approach, np.float64)
    if x.shape != (3,) or z.shape != (3,) or not (np.isfinite(x).all() and np.isfinite(z).all()):
        raise ValueError(f"{where}: closing and approach must be finite 3-vectors, got {grasp.closing}, {grasp.approach}")
    if abs(x @ x - 1) > UNIT_TOLERANCE or abs(z @ z - 1) > UNIT_TOLERANCE or abs(x @ z) > UNIT_TOLERANCE:
        raise ValueError(f"{where}: closing {grasp.closing} and approach {grasp.approach} must be perpendicular unit vectors")
    return np.column_stack([x, np.cross(z, x), z])


def _pose(grasp: Grasp, where: str) -> Pose:
    if not np.isfinite(grasp.position).all() or len(grasp.position) != 3:
        raise ValueError(f"{where}: grasp position must be 3 finite numbers, got {grasp.position}")
    qx, qy, qz, qw = Rotation.from_matrix(grasp_rotation(grasp, where)).as_quat().tolist()
    x, y, z = (float(v) for v in grasp.position)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def _instance(ident: int, result: InstanceResult, size: tuple[int, int], where: str) -> Instance:
    mask = _check_mask(result.mask, size, where)
    if not (math.isfinite(result.score) and 0 <= result.score <= 1):
        raise ValueError(f"{where}: score must be in [0, 1], got {result.score}")
    counts = rle.encode(mask)
    x, y, w, h = rle.bbox(counts, *size)
    msg = Instance(
        id=ident, class_id=int(result.class_id), class_name=result.class_name, score=_f32(result.score),
        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h),
        mask=MaskRLE(height=size[0], width=size[1], counts=counts.tolist()),
    )  # fmt: skip
    if result.box is not None:
        box = result.box
        msg.has_oriented_box = True
        msg.oriented_box = OrientedBox2D(center_x=float(box.center_x), center_y=float(box.center_y),
                                         theta=float(box.theta), length=float(box.length), width=float(box.width))
    if result.grasp is not None:
        msg.has_grasp = True
        msg.grasp_pose = _pose(result.grasp, where)
        msg.grasp_width = _f32(result.grasp.width)
        msg.grasp_score = _f32(result.grasp.score)
    return msg


def instance_array(header: Header, image_size: tuple[int, int], results: Sequence[InstanceResult],
                   ids: Sequence[int] | None = None) -> InstanceArray:
    """The InstanceArray of one frame: instances by decreasing score (ties keep their order) with ids
    1, 2, ... in that order, or each result's id from `ids` (a tracker's: distinct, >= 1); `image_size`
    is (height, width) of the source image, the masks' size."""
    size = _image_size(image_size)
    if ids is not None and (len(ids) != len(results) or len(set(ids)) != len(ids) or min(ids, default=1) < 1):
        raise ValueError(f"ids must be distinct, >= 1 and one per instance, got {list(ids)} for {len(results)}")
    order = sorted(range(len(results)), key=lambda k: -results[k].score)
    instances = [_instance(n + 1 if ids is None else int(ids[k]), results[k], size, f"instance {k}")
                 for n, k in enumerate(order)]
    return InstanceArray(header=header, image_height=size[0], image_width=size[1], instances=instances)


def grasp_poses(instances: InstanceArray) -> PoseArray:
    """The grasps of an InstanceArray, best (highest grasp score) first, in its header's frame (the
    camera's optical frame). A frame without a grasp gives an empty array: "nothing to pick" is an answer."""
    graspable = sorted((item for item in instances.instances if item.has_grasp), key=lambda item: -item.grasp_score)
    return PoseArray(header=instances.header, poses=[item.grasp_pose for item in graspable])


def instances_from_messages(pipeline: InstancePipeline, msg: Image | CompressedImage, info: CameraInfo | None = None,
                            depth: Image | None = None) -> tuple[InstanceArray, InstanceFrame]:
    """One frame's messages through the instance pipeline, as the instance_segmenter node and the offline
    replay both run it: the image decoded (ImageFormatError when bad), the CameraInfo's contents handed
    over as they are, the depth image in metres (one that does not decode costs the sticks' heights, listed
    among the frame's problems after the pipeline's own), and the InstanceArray under the image's header."""
    image = to_bgr(msg, pipeline.settings.max_image_pixels)
    metres = None
    unreadable = []
    if depth is not None:
        try:
            metres = depth_to_metres(depth)
        except ImageFormatError as error:
            unreadable.append(pipeline.depth_left_out(error))
    frame = pipeline(image, None if info is None else calibration_from_info(info), metres)
    frame.problems.extend(unreadable)
    return instance_array(msg.header, image.shape[:2], frame.results), frame


def _grasp(msg: Any) -> Grasp:
    p, q = msg.grasp_pose.position, msg.grasp_pose.orientation
    rotation = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    (xx, xy, xz), (zx, zy, zz) = rotation[:, 0].tolist(), rotation[:, 2].tolist()
    return Grasp((float(p.x), float(p.y), float(p.z)), (xx, xy, xz), (zx, zy, zz), float(msg.grasp_width),
                 float(msg.grasp_score))


def instance_results(msg: Any) -> list[InstanceResult]:
    """The instances of an InstanceArray (rclpy or rosbags message) in its order; a mask of another
    size than the image is an error."""
    size = (int(msg.image_height), int(msg.image_width))
    results = []
    for k, instance in enumerate(msg.instances):
        coded = instance.mask
        if (int(coded.height), int(coded.width)) != size:
            raise ValueError(f"instance {k}: mask is {coded.width}x{coded.height}, the image {size[1]}x{size[0]}")
        try:
            mask = rle.decode(np.asarray(coded.counts), *size)
        except rle.RLEError as error:
            raise ValueError(f"instance {k}: {error}") from None
        ob = instance.oriented_box
        box = OrientedBox(ob.center_x, ob.center_y, ob.theta, ob.length, ob.width) if instance.has_oriented_box else None
        results.append(InstanceResult(mask=mask, score=float(instance.score), class_id=int(instance.class_id),
                                      class_name=str(instance.class_name), box=box,
                                      grasp=_grasp(instance) if instance.has_grasp else None))
    return results


def _rgba(rgb: tuple[int, int, int]) -> ColorRGBA:
    r, g, b = (c / 255 for c in rgb)
    return ColorRGBA(r=r, g=g, b=b, a=1.0)


def instance_markers(instances: InstanceArray, arrow_length: float = 0.1, jaw_thickness: float = 0.005,
                     text_height: float = 0.02, score_threshold: float = 0.5, lifetime: float = 0.0) -> MarkerArray:
    """RViz markers of the grasps in the array's header frame, stamped with its stamp: a DELETEALL, then
    per instance with a grasp an ARROW along the approach ending at the grasp point (namespace
    "grasp_approach"), a CUBE at the grasp pose spanning the opening along the closing axis
    ("grasp_jaws") and a TEXT_VIEW_FACING "<id> <grasp score>" behind the arrow's tail ("grasp_labels");
    all three take the instance's index in the array as id and are green at or above `score_threshold`,
    vermillion below. Sizes are metres; `lifetime` is seconds (0: until replaced, which the DELETEALL
    leading every array does)."""
    sizes = {"arrow_length": arrow_length, "jaw_thickness": jaw_thickness, "text_height": text_height}
    bad = [f"{name} {value}" for name, value in sizes.items() if not (math.isfinite(value) and value > 0)]
    if bad or not (math.isfinite(lifetime) and lifetime >= 0):
        raise ValueError(f"marker sizes must be positive metres and lifetime >= 0 seconds, got {bad or lifetime}")
    header = Header(stamp=instances.header.stamp, frame_id=instances.header.frame_id)
    life = Duration(nanoseconds=round(lifetime * 1e9)).to_msg()
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for k, instance in enumerate(instances.instances):
        if not instance.has_grasp:
            continue
        pose = instance.grasp_pose
        q = pose.orientation
        approach = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()[:, 2]
        tip = np.array([pose.position.x, pose.position.y, pose.position.z])
        tail = tip - approach * arrow_length
        label = tail - approach * text_height
        colour = _rgba(GRASP_OK_RGB if instance.grasp_score >= score_threshold else GRASP_DOUBTFUL_RGB)
        shaft = arrow_length / 20
        markers.append(Marker(
            header=header, ns=APPROACH_NS, id=k, type=Marker.ARROW, action=Marker.ADD, lifetime=life, color=colour,
            scale=Vector3(x=shaft, y=2 * shaft, z=4 * shaft),
            points=[Point(x=x, y=y, z=z) for x, y, z in (tail.tolist(), tip.tolist())],
        ))  # fmt: skip
        markers.append(Marker(
            header=header, ns=JAWS_NS, id=k, type=Marker.CUBE, action=Marker.ADD, lifetime=life, color=colour,
            pose=pose, scale=Vector3(x=max(float(instance.grasp_width), jaw_thickness), y=jaw_thickness, z=jaw_thickness),
        ))  # fmt: skip
        x, y, z = label.tolist()
        markers.append(Marker(
            header=header, ns=LABELS_NS, id=k, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD, lifetime=life,
            color=colour, pose=Pose(position=Point(x=x, y=y, z=z)), scale=Vector3(z=text_height),
            text=f"{instance.id} {instance.grasp_score:.2f}",
        ))  # fmt: skip
    return MarkerArray(markers=markers)


def _pixel(point: np.ndarray, K: np.ndarray) -> tuple[int, int]:
    """cv2 fixed point (4 fractional bits) of a camera-frame point's pixel."""
    u, v = K[0, 0] * point[0] / point[2] + K[0, 2], K[1, 1] * point[1] / point[2] + K[1, 2]
    return round(u * 16), round(v * 16)


def draw_instances(
    image_bgr: np.ndarray,
    results: Sequence[InstanceResult],
    K: np.ndarray | None = None,
    alpha: float = 0.45,
    score_threshold: float = 0.5,
) -> np.ndarray:
    """A copy of the image with each mask tinted in its colour (palette order = `results` order), its
    rotated box outlined and its score written; with the camera matrix `K`, each grasp is drawn as the
    line the jaws span at the grasp point, green at or above `score_threshold`, vermillion below."""
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be BGR uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if K is not None:
        K = np.asarray(K, np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must be a 3x3 camera matrix, got shape {K.shape}")
    out = image.astype(np.float32)
    colours = [PALETTE[k % len(PALETTE)][::-1] for k in range(len(results))]
    for k, (result, bgr) in enumerate(zip(results, colours)):
        mask = _check_mask(result.mask, image.shape[:2], f"instance {k}")
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(bgr, np.float32)
    out = np.round(out).astype(np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for result, bgr in zip(results, colours):
        if result.box is not None:
            b = result.box
            corners = cv2.boxPoints(((b.center_x, b.center_y), (b.length, b.width), math.degrees(b.theta)))
            cv2.polylines(out, [np.round(corners * 16).astype(np.int32)], True, bgr, 1, cv2.LINE_AA, shift=4)
        rows, cols = np.nonzero(result.mask)
        if rows.size:
            cv2.putText(out, f"{result.score:.2f}", (int(cols.min()), max(int(rows.min()) - 2, 8)), font, 0.35, bgr, 1,
                        cv2.LINE_AA)
    if K is None:
        return out
    for grasp in (r.grasp for r in results):  # last, on top of every box and label
        if grasp is None or grasp.position[2] <= 0:  # behind the camera: nothing to draw
            continue
        centre, half = np.asarray(grasp.position), np.asarray(grasp.closing) * grasp.width / 2
        rgb = GRASP_OK_RGB if grasp.score >= score_threshold else GRASP_DOUBTFUL_RGB
        cv2.line(out, _pixel(centre - half, K), _pixel(centre + half, K), rgb[::-1], 2, cv2.LINE_AA, shift=4)
        cv2.circle(out, _pixel(centre, K), 2 * 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return out
