"""Sticks bags: written here, read back by rosbags and by our reader with every field intact."""

from __future__ import annotations

import numpy as np
import pytest
from instance_checks import assert_same_results

from refine_perception.bags.frames import CAMERA_INFO_TOPIC, IMAGE_TOPIC
from refine_perception.bags.instance_bags import DEPTH_TOPIC, TRUTH_INSTANCES_TOPIC, read_instance_bag, write_instance_bag
from refine_perception.bags.reader import BagError
from refine_perception.data.synthetic.sticks import DEPTH_UNIT_M, sticks_scenes
from refine_perception.instances.sticks_truth import scene_truth
from refine_perception.ros.instance_messages import instance_results

SIZE = (160, 120)


@pytest.fixture(scope="module")
def scenes():
    return list(sticks_scenes(7, 3, *SIZE))


def test_scenes_depend_on_seed_and_index_only(scenes) -> None:
    again = list(sticks_scenes(7, 2, *SIZE))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, scenes))
    assert not np.array_equal(scenes[0].image, scenes[1].image)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_bag_reads_back_in_rosbags_with_every_field(tmp_path, scenes, storage) -> None:
    from rosbags.highlevel import AnyReader

    bag = tmp_path / "sticks"
    assert write_instance_bag(bag, scenes, storage=storage, transport="raw") == 3
    with AnyReader([bag]) as reader:  # the definitions come from the bag itself
        decoded = [(c.topic, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
    seen = {name: [(t, msg) for topic, t, msg in decoded if topic == name] for name, _, _ in decoded}
    assert sorted(seen) == sorted([IMAGE_TOPIC, CAMERA_INFO_TOPIC, DEPTH_TOPIC, TRUTH_INSTANCES_TOPIC])
    for k, scene in enumerate(scenes):
        time_ns, image = seen[IMAGE_TOPIC][k]
        stamp = image.header.stamp
        assert stamp.sec * 10**9 + stamp.nanosec == time_ns and image.header.frame_id == "camera_optical_frame"
        assert image.encoding == "bgr8" and np.array_equal(np.asarray(image.data).reshape(scene.image.shape), scene.image)
        info = seen[CAMERA_INFO_TOPIC][k][1]
        assert info.header == image.header and (info.width, info.height) == SIZE
        np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), scene.camera.K)
        depth = seen[DEPTH_TOPIC][k][1]
        assert depth.header == image.header and depth.encoding == "16UC1"
        millimetres = np.frombuffer(np.asarray(depth.data).tobytes(), "<u2").reshape(SIZE[::-1])
        np.testing.assert_allclose(millimetres * DEPTH_UNIT_M, scene.depth, atol=DEPTH_UNIT_M / 2 + 1e-7)
        truth = seen[TRUTH_INSTANCES_TOPIC][k][1]
        assert truth.header == image.header and (truth.image_width, truth.image_height) == SIZE
        assert_same_results(instance_results(truth), scene_truth(scene))  # truth scores are all 1: order kept


def test_our_reader_finds_the_camera_beside_the_depth(tmp_path, scenes) -> None:
    path = tmp_path / "sticks"
    write_instance_bag(path, scenes)
    bag = read_instance_bag(path)
    assert (bag.image_topic, bag.compressed) == (f"{IMAGE_TOPIC}/compressed", True)
    assert (bag.camera_info_topic, bag.depth_topic) == (CAMERA_INFO_TOPIC, DEPTH_TOPIC) and not bag.errors
    assert len(bag.stamps) == 3 and set(bag.truth) == set(bag.stamps) and bag.stamps == sorted(bag.stamps)
    for stamp, scene in zip(bag.stamps, scenes):
        assert_same_results(instance_results(bag.truth[stamp]), scene_truth(scene))
    # depth images are set apart by their topic's name (.../depth/...); under another name they count
    other = tmp_path / "range"
    write_instance_bag(other, scenes[:1], depth_topic="/camera/range/image_raw")
    with pytest.raises(BagError, match="2 image topics"):
        read_instance_bag(other)
    bag = read_instance_bag(other, image_topic=f"{IMAGE_TOPIC}/compressed", depth_topic="/camera/range/image_raw")
    assert bag.depth_topic == "/camera/range/image_raw"


def test_bag_without_depth(tmp_path, scenes) -> None:
    path = tmp_path / "sticks"
    write_instance_bag(path, scenes[:1], storage="sqlite3", transport="raw", depth_topic=None)
    bag = read_instance_bag(path)
    assert bag.depth_topic is None and bag.image_topic == IMAGE_TOPIC and len(bag.truth) == 1
    with pytest.raises(ValueError, match="transport"):
        write_instance_bag(tmp_path / "other", scenes, transport="png")


def test_mcap_tools_decode_our_sticks_bag(tmp_path, scenes) -> None:
    from mcap_ros2.reader import read_ros2_messages

    bag = tmp_path / "sticks"
    write_instance_bag(bag, scenes)
    (file,) = bag.glob("*.mcap")
    decoded: dict[str, list] = {}
    for message in read_ros2_messages(str(file)):  # schemas embedded as ros2msg text
        decoded.setdefault(message.channel.topic, []).append(message.ros_msg)
    assert len(decoded[TRUTH_INSTANCES_TOPIC]) == len(scenes)
    for truth, scene in zip(decoded[TRUTH_INSTANCES_TOPIC], scenes):
        assert_same_results(instance_results(truth), scene_truth(scene))
    assert all(m.encoding == "16UC1" for m in decoded[DEPTH_TOPIC])


def test_a_garbage_compressed_image_in_a_sticks_bag_is_listed_and_scored_as_missing(tmp_path, scenes) -> None:
    """Replay through the instance segmenter, offline and lossless, of a bag with one CompressedImage that
    is not an image at all: a report listing it, the frame scored as one without output."""
    import yaml
    from instance_checks import write_banded_model
    from replay_checks import assert_bad_frame_scored_as_missing

    bag = tmp_path / "sticks"
    write_instance_bag(bag, scenes)
    model = write_banded_model(tmp_path / "banded.safetensors", input_size=SIZE[::-1])
    params = tmp_path / "instances.yaml"
    params.write_text(yaml.safe_dump({"/**/instance_segmenter": {"ros__parameters": {"model": str(model)}}}))

    def garbage(image):
        image.data = b"not a JPEG at all" * 10
        return image

    assert_bad_frame_scored_as_missing(bag, 1, garbage, tmp_path, "--params", str(params))
