"""Street bags and their replay, as a user runs them: street scenes (rendered, or read from a Cityscapes-layout
folder) -> bag -> the street segmenter over DDS (lossless) or offline -> figures and report; lossless
replay equals offline exactly, and a frame whose image cannot be read is listed and scored as missed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from replay_checks import TIMING_KEYS, assert_bad_frame_scored_as_missing, figures, run
from street_checks import write_car_model

from refine_perception.bags.frames import cdr_stamp
from refine_perception.bags.reader import BagReader
from refine_perception.bags.street_bags import read_street_bag
from refine_perception.data.formats import cityscapes
from refine_perception.data.synthetic.street import generate_street_dataset, render_street

SOURCE = "synthetic:street?seed=4&frames=5&width=256&height=128"


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("street_params")
    model = write_car_model(folder / "cars.safetensors")
    path = folder / "street_segmenter.yaml"
    path.write_text(yaml.safe_dump({"/**/street_segmenter": {"ros__parameters": {"model": str(model), "threads": 1}}}))
    return path


@pytest.fixture(scope="module")
def street_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bag = tmp_path_factory.mktemp("street") / "bag"
    run("bag", "write", str(bag), "--source", SOURCE)
    return bag


def test_bag_holds_the_scenes_ground_truth(street_bag: Path) -> None:
    bag = read_street_bag(street_bag)
    assert bag.image_topic == "/camera/image_raw/compressed" and bag.camera_info_topic == "/camera/camera_info"
    assert len(bag.stamps) == 5 and set(bag.truth) == set(bag.instance_truth) == set(bag.stamps) and not bag.errors
    scene = render_street(np.random.SeedSequence([4, 3]), 256, 128)
    assert np.array_equal(bag.truth[bag.stamps[3]], scene.label_ids)
    assert np.array_equal(bag.instance_truth[bag.stamps[3]], scene.instance_ids)


def test_lossless_replay_equals_offline(street_bag: Path, params: Path, tmp_path: Path) -> None:
    for mode in ("offline", "lossless"):
        run("replay", str(street_bag), "--out", str(tmp_path / mode), "--mode", mode, "--params", str(params))
    offline, lossless = figures(tmp_path / "offline"), figures(tmp_path / "lossless")
    assert lossless["task"] == "street" and lossless["frames_scored"] == 5 and lossless["dropped"] == 0
    assert {k: v for k, v in lossless.items() if k not in TIMING_KEYS} == \
        {k: v for k, v in offline.items() if k not in TIMING_KEYS}

    def outputs(folder: Path, topic: str) -> dict:
        return {cdr_stamp(m.data): m.decode() for m in BagReader(folder / "results").messages({topic})}

    for topic in ("/labels", "/instances"):
        published = outputs(tmp_path / "lossless", topic)
        assert len(published) == 5 and published == outputs(tmp_path / "offline", topic), topic
    # the test model labels every pixel car: car IoU is the cars' share of the scene, every other class 0
    assert 0 < lossless["IoU"]["car"] < 0.5 and lossless["IoU"]["road"] == 0.0 and lossless["mIoU"] < 0.1
    assert set(lossless["coco_mask_ap"]["per_class"]) <= {"car", "person"}
    report = (tmp_path / "lossless" / "report.md").read_text()
    assert "# Street replay evaluation" in report and "| car |" in report and "Worst frames" in report
    assert (tmp_path / "lossless" / "worst_frames.png").stat().st_size > 10000


def test_a_cityscapes_folder_becomes_a_street_bag(tmp_path: Path, params: Path) -> None:
    generate_street_dataset(tmp_path / "data", 3, seed=6, split="val", workers=1, progress=False, width=256, height=128)
    bag = tmp_path / "bag"
    run("bag", "write", str(bag), "--cityscapes", str(tmp_path / "data"), "--split", "val", "--transport", "raw")
    read = read_street_bag(bag)
    assert read.image_topic == "/camera/image_raw" and read.camera_info_topic == "/camera/camera_info"
    for stamp, paths in zip(read.stamps, cityscapes.find_samples(tmp_path / "data", "val")):
        truth = cityscapes.read_annotation(paths.label_ids, paths.instance_ids)
        assert np.array_equal(read.truth[stamp], truth.label_ids)
        assert np.array_equal(read.instance_truth[stamp], truth.instance_ids)
    run("replay", str(bag), "--out", str(tmp_path / "rep"), "--mode", "offline", "--params", str(params))
    assert figures(tmp_path / "rep")["frames_scored"] == 3


def test_an_unreadable_image_is_listed_and_scored_as_missed(street_bag: Path, params: Path, tmp_path: Path) -> None:
    def corrupt(msg):
        msg.data = np.frombuffer(b"not a jpeg at all", np.uint8)
        return msg

    assert_bad_frame_scored_as_missing(street_bag, 2, corrupt, tmp_path, "--params", str(params))


def test_bag_write_refuses_two_sources_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    import subprocess

    from replay_checks import CLI

    (tmp_path / "empty").mkdir()
    for extra in (["--source", SOURCE, "--cityscapes", str(tmp_path)], ["--cityscapes", str(tmp_path / "empty")]):
        done = subprocess.run([*CLI, "bag", "write", str(tmp_path / "out"), *extra], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0 and "Traceback" not in done.stderr and not (tmp_path / "out").exists(), done.stderr


def test_bad_ground_truth_is_listed_not_rescaled(tmp_path: Path) -> None:
    """An 8-bit instance image keeps its values, a colour label image and a lone instance image are errors."""
    from refine_perception.bags.frames import stamped
    from refine_perception.bags.writer import BagWriter
    from refine_perception.ros.image_messages import numpy_to_compressed, numpy_to_image

    ids = np.full((8, 16), 26, np.uint8)
    with BagWriter(tmp_path / "bag", "mcap") as writer:
        for index, header, time_ns in stamped(range(3), 10.0, "cam"):
            writer.write("/camera/image_raw/compressed", numpy_to_compressed(np.zeros((8, 16, 3), np.uint8), "jpeg",
                                                                             90, header), time_ns)
            labels = np.full((8, 16), 26, np.uint8)
            if index != 2:
                encoded = (numpy_to_image(labels, "mono8", header) if index == 0 else
                           numpy_to_image(np.dstack([labels] * 3), "bgr8", header))
                writer.write("/ground_truth/labels", encoded, time_ns)
            writer.write("/ground_truth/instance_ids", numpy_to_image(ids, "mono8", header), time_ns)
    bag = read_street_bag(tmp_path / "bag")
    assert len(bag.truth) == 1 and bag.instance_truth[bag.stamps[0]].max() == 26
    problems = " ".join(str(e) for e in bag.errors)
    assert "encoding 'bgr8'" in problems and "/ground_truth/instance_ids at" in problems and "no /ground_truth/labels" in problems


def test_a_results_topic_that_is_no_label_image_is_a_clear_error(street_bag: Path, params: Path, tmp_path: Path) -> None:
    import subprocess

    from replay_checks import CLI

    run("replay", str(street_bag), "--out", str(tmp_path / "run"), "--mode", "offline", "--params", str(params))
    done = subprocess.run([*CLI, "replay", str(street_bag), "--out", str(tmp_path / "again"), "--results",
                           str(tmp_path / "run" / "results"), "--results-topic", "/instances"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "not a topic of label images" in done.stderr and "Traceback" not in done.stderr
