"""InstanceArray from InstanceResults and back through serialisation, RViz markers of the grasps and the
debug overlay."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from instance_checks import assert_same_results, by_score
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from refine_msgs.msg import InstanceArray
from refine_perception.data.synthetic.sticks import render_sticks
from refine_perception.instances.grasps import add_grasps
from refine_perception.instances.sticks_truth import scene_truth
from refine_perception.ros.instance_messages import (
    GRASP_DOUBTFUL_RGB,
    GRASP_OK_RGB,
    draw_instances,
    instance_array,
    instance_markers,
    instance_results,
)

HEADER = Header(stamp=Time(sec=1_700_000_001, nanosec=250_000_000), frame_id="camera_optical_frame")


@pytest.fixture(scope="module")
def scene():
    return render_sticks(5, 160, 120)


@pytest.fixture(scope="module")
def results(scene):
    """Predictions as the node makes them: grasps from the masks, scores all different, one instance
    without grasp and box."""
    grasped = add_grasps(scene_truth(scene), scene.camera.K, scene.camera_height, depth=scene.depth)
    grasped[1] = dataclasses.replace(grasped[1], grasp=None, box=None)
    return [dataclasses.replace(r, score=0.3 + 0.05 * k, class_id=2 + k % 2) for k, r in enumerate(grasped)]


def test_round_trip_keeps_every_field(scene, results) -> None:
    msg = instance_array(HEADER, scene.image.shape[:2], results)
    again = deserialize_message(serialize_message(msg), InstanceArray)
    assert again.header == HEADER and (again.image_height, again.image_width) == (120, 160)
    assert [i.id for i in again.instances] == list(range(1, len(results) + 1))
    assert [i.score for i in again.instances] == sorted((np.float32(r.score) for r in results), reverse=True)
    assert any(r.grasp is None for r in results) and any(r.grasp is not None for r in results)
    for instance, result in zip(again.instances, by_score(results)):
        rows, cols = np.nonzero(result.mask)
        box = instance.bbox
        assert (box.x_offset, box.y_offset) == (cols.min(), rows.min())
        assert (box.width, box.height) == (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
        if result.grasp is not None:  # the pose's x and z axes are the closing and approach directions
            q = instance.grasp_pose.orientation
            assert math.isclose(q.x**2 + q.y**2 + q.z**2 + q.w**2, 1.0, rel_tol=1e-12)
    assert_same_results(instance_results(again), by_score(results))


def test_truth_round_trip(scene) -> None:
    truth = scene_truth(scene)
    assert_same_results(instance_results(instance_array(HEADER, (120, 160), truth)), truth)


def test_bad_input_is_a_clear_error(scene, results) -> None:
    with pytest.raises(ValueError, match="must be bool 100x160"):
        instance_array(HEADER, (100, 160), results)
    with pytest.raises(ValueError, match="image_size"):
        instance_array(HEADER, (0, 160), results)
    grasp = next(r.grasp for r in results if r.grasp is not None)
    askew = dataclasses.replace(results[0], grasp=dataclasses.replace(grasp, closing=(1.0, 0.0, 0.1)))
    with pytest.raises(ValueError, match="perpendicular unit vectors"):
        instance_array(HEADER, (120, 160), [askew])
    with pytest.raises(ValueError, match="score must be in"):
        instance_array(HEADER, (120, 160), [dataclasses.replace(results[0], score=1.5)])
    msg = instance_array(HEADER, (120, 160), results[:1])
    msg.instances[0].mask.width = 80
    with pytest.raises(ValueError, match="instance 0: mask is 80x120"):
        instance_results(msg)


def test_markers_show_each_grasp(results) -> None:
    msg = instance_array(HEADER, (120, 160), results)
    markers = instance_markers(msg, arrow_length=0.1, score_threshold=0.5).markers
    grasped = [(k, i) for k, i in enumerate(msg.instances) if i.has_grasp]
    assert markers[0].action == Marker.DELETEALL
    assert len(markers) == 1 + 3 * len(grasped)
    assert all(m.header.frame_id == "camera_optical_frame" and m.header.stamp == HEADER.stamp for m in markers)
    for (k, instance), (arrow, jaws, label) in zip(grasped, zip(*[iter(markers[1:])] * 3)):
        assert (arrow.type, jaws.type, label.type) == (Marker.ARROW, Marker.CUBE, Marker.TEXT_VIEW_FACING)
        assert arrow.id == jaws.id == label.id == k
        tail, tip = (np.array([p.x, p.y, p.z]) for p in arrow.points)
        position = instance.grasp_pose.position
        np.testing.assert_allclose(tip, [position.x, position.y, position.z])
        np.testing.assert_allclose(tip - tail, [0, 0, 0.1], atol=1e-12)  # straight down the optical axis
        assert jaws.pose == instance.grasp_pose and math.isclose(jaws.scale.x, instance.grasp_width, rel_tol=1e-6)
        rgb = GRASP_OK_RGB if instance.grasp_score >= 0.5 else GRASP_DOUBTFUL_RGB
        assert (round(arrow.color.r * 255), round(arrow.color.g * 255), round(arrow.color.b * 255)) == rgb
        assert label.text == f"{instance.id} {instance.grasp_score:.2f}"
    with pytest.raises(ValueError, match="arrow_length 0.0"):
        instance_markers(msg, arrow_length=0.0)


def test_overlay_tints_masks_and_draws_grasps(scene, results) -> None:
    plain = draw_instances(scene.image, results)
    assert plain.shape == scene.image.shape and plain.dtype == np.uint8
    anywhere = np.any([r.mask for r in results], axis=0)
    changed = np.any(plain != scene.image, axis=2)
    assert changed[anywhere].mean() > 0.9  # tinted
    far = np.ones_like(anywhere)
    for r in results:  # away from the masks, their boxes and labels nothing changes
        rows, cols = np.nonzero(r.mask)
        far[max(rows.min() - 12, 0) : rows.max() + 6, max(cols.min() - 6, 0) : cols.max() + 40] = False
    assert far.any() and not changed[far].any()

    with_grasps = draw_instances(scene.image, results, scene.camera.K)
    K = scene.camera.K
    for r in results:
        if r.grasp is not None:  # a white dot (anti-aliased) at the grasp point's pixel
            x, y, z = r.grasp.position
            u, v = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
            assert with_grasps[round(v), round(u)].min() > 200 > plain[round(v), round(u)].min()
    with pytest.raises(ValueError, match="BGR uint8"):
        draw_instances(scene.image[..., 0], results)
