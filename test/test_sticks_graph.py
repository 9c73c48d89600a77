"""The sticks graph: synthetic sticks scenes as a camera source (frames, intrinsics, depth, rendered once),
the camera publishing their depth over real DDS to the instance segmenter wired as the graph wires it,
the graph's plan, and `refine-perception demo sticks` end to end with an untrained test model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from instance_checks import write_banded_model
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from refine_msgs.msg import InstanceArray
from refine_perception.cli.launch import _sticks_figures
from refine_perception.core.frame_sources import (
    DEFAULT_SOURCE,
    SourceError,
    SyntheticDriveSource,
    SyntheticSticksSource,
    open_source,
)
from refine_perception.data.synthetic import sticks as sticks_module
from refine_perception.data.synthetic.sticks import render_sticks
from refine_perception.graphs import DEPTH_TOPIC, plan
from refine_perception.instances.pipeline import InstancePipeline, InstanceSettings, open_instance_predictor
from refine_perception.instances.sticks_truth import scene_truth
from refine_perception.ros.graph_runner import node_class
from refine_perception.ros.image_messages import depth_to_metres
from refine_perception.ros.instance_messages import instance_array, instance_results, instances_from_messages
from refine_perception.share import config_dir

CLI = [str(Path(sys.prefix) / "lib" / "refine_perception" / "refine-perception")]
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
SMALL = "synthetic:sticks?frames=3&width=160&height=120&seed=4"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_banded_model(tmp_path_factory.mktemp("model") / "banded.safetensors")


def scene(seed: int, index: int, width: int = 160, height: int = 120):
    return render_sticks(np.random.SeedSequence([seed, index]), width, height)


# --- the source ------------------------------------------------------------------------------------------

def test_sticks_source_gives_the_scenes_with_intrinsics_and_depth_in_millimetres():
    source = open_source(SMALL)
    assert isinstance(source, SyntheticSticksSource) and len(source) == 3 and source.fps == 10.0
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    for frame in frames:
        expected = scene(4, frame.index)
        np.testing.assert_array_equal(frame.image, expected.image)
        np.testing.assert_array_equal(frame.camera_matrix, expected.camera.K)
        depth = frame.extras["depth"]
        assert depth.dtype == np.uint16 and depth.shape == (120, 160)
        np.testing.assert_array_equal(depth, np.round(expected.depth * 1000).astype(np.uint16))
        assert 400 < depth.min() < depth.max() <= 800  # sticks lie nearer than the table, 0.55-0.8 m away


def test_sticks_source_defaults_and_the_camera_default_stays_the_drive():
    source = open_source("synthetic:sticks")
    assert source.options == {"seed": 2, "frames": 20, "fps": 10.0, "width": 640, "height": 480}
    assert len(source) == 20 and source.name == "synthetic:sticks"
    assert isinstance(open_source(DEFAULT_SOURCE), SyntheticDriveSource)


def test_sticks_source_renders_each_scene_once_and_replays_it(monkeypatch):
    rendered: list[int] = []

    def counting(seed: np.random.SeedSequence, width: int, height: int):
        rendered.append(seed.entropy[1])
        return render_sticks(seed, width, height)

    monkeypatch.setattr(sticks_module, "render_sticks", counting)
    source = open_source(SMALL)
    assert rendered == []  # opening renders nothing
    first = next(iter(source))  # a pass broken off after one frame
    assert rendered == [0]
    second_pass = list(source)
    third_pass = list(source)
    assert rendered == [0, 1, 2]  # the later passes went on where the first stopped, then only replayed
    assert second_pass[0] is first and all(a is b for a, b in zip(second_pass, third_pass))
    np.testing.assert_array_equal(second_pass[2].image, scene(4, 2).image)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:sticks?colour=red", "unknown option 'colour'"),
        ("synthetic:sticks?seed=two", "not a valid int"),
        ("synthetic:sticks?frames=0", "needs frames >= 1"),
        ("synthetic:sticks?fps=0", "fps > 0"),
        ("synthetic:sticks?width=32", "at least 64x64"),
    ],
)
def test_sticks_source_rejects_bad_options(spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec)


# --- the graph -------------------------------------------------------------------------------------------

def test_sticks_graph_wires_the_cameras_depth_into_the_segmenter():
    camera, segmenter = plan("sticks", {}, config_dir())
    assert (camera.name, segmenter.name) == ("camera_source", "instance_segmenter")
    assert camera.overrides == {"use_sim_time": False, "source": "synthetic:sticks", "transport": "raw"}
    assert segmenter.overrides == {"use_sim_time": False, "transport": "raw"}
    published, read = dict(camera.remappings), dict(segmenter.remappings)
    for topic in ("image_raw", "camera_info", "depth/image_raw"):
        assert published[topic] == read[topic], topic
    assert read["depth/image_raw"] == DEPTH_TOPIC.default == "camera/depth/image_raw"

    values = {"camera": "false", "image_topic": "/top/image_raw", "depth_topic": "/top/depth", "rate_hz": "0",
              "backend": "torch", "precision": "fp32", "transport": "compressed"}
    (own,) = plan("sticks", values, config_dir())
    assert own.name == "instance_segmenter"
    assert own.overrides == {"use_sim_time": False, "transport": "compressed", "backend": "torch", "precision": "fp32"}
    assert dict(own.remappings) == {"image_raw": "/top/image_raw", "image_raw/compressed": "/top/image_raw/compressed",
                                    "camera_info": "camera/camera_info", "depth/image_raw": "/top/depth"}
    camera, _ = plan("sticks", {"source": SMALL, "max_frames": "3", "rate_hz": "5"}, config_dir())
    assert camera.overrides == {"use_sim_time": False, "source": SMALL, "max_frames": 3, "rate_hz": 5.0,
                                "transport": "raw"}


def test_a_source_without_depth_publishes_no_depth_topic(ros, tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((64, 64, 3), np.uint8))
    ros_args = plan("sticks", {"source": str(tmp_path)}, config_dir())[0].ros_args()
    camera = ros.add(node_class("camera_source")(cli_args=ros_args, use_global_arguments=False))
    assert ros.spin_until(lambda: camera.count_publishers("/camera/camera_info") == 1)
    assert camera.count_publishers("/camera/depth/image_raw") == 0


def test_camera_depth_reaches_the_segmenter_over_dds(ros, model: Path):
    """The two nodes as the sticks graph starts them (lock-step, 3 small scenes): each frame's depth comes
    with the image's header, and the segmenter's grasps are what the offline pipeline makes of image,
    CameraInfo and that depth, not of the table distance it falls back to without depth."""
    probe = ros.probe()
    images, infos, depths, arrays = [], [], [], []
    probe.create_subscription(Image, "camera/image_raw", images.append, RELIABLE)
    probe.create_subscription(CameraInfo, "camera/camera_info", infos.append, RELIABLE)
    probe.create_subscription(Image, "camera/depth/image_raw", depths.append, RELIABLE)
    probe.create_subscription(InstanceArray, "instances", arrays.append, RELIABLE)
    extra = {"instance_segmenter": ["-p", f"model:={model}", "-p", "threads:=1"],  # each frame waits for its array
             "camera_source": ["-p", "pace_topic:=instances", "-p", "pace_type:=refine_msgs/msg/InstanceArray"]}
    nodes = {p.name: ros.add(node_class(p.executable)(cli_args=p.ros_args() + extra[p.name], use_global_arguments=False))
             # the segmenter first: the camera starts as soon as the probe takes images
             for p in reversed(plan("sticks", {"source": SMALL, "max_frames": "3", "rate_hz": "0"}, config_dir()))}
    camera, segmenter = nodes["camera_source"], nodes["instance_segmenter"]
    assert ros.spin_until(lambda: camera.count_publishers("/camera/depth/image_raw") == 1)
    # the worker counts a frame once its handler has returned, just after the publish that woke us
    assert ros.spin_until(lambda: len(arrays) == 3 and camera.finished.is_set() and segmenter.counters.processed == 3,
                          timeout=60), segmenter.counters.as_dict()
    assert len(depths) == 3 and segmenter.counters.dropped_total == 0

    stamp = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in images]
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in depths] == stamp
    assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in arrays] == stamp
    assert all(m.header.frame_id == "camera_optical_frame" for m in (*depths, *arrays))
    for index, depth in enumerate(depths):
        expected = scene(4, index)
        assert (depth.encoding, depth.height, depth.width) == ("16UC1", 120, 160)
        np.testing.assert_allclose(depth_to_metres(depth), expected.depth, atol=0.0005)
    level, message, values = segmenter.status_summary()
    assert "missing_inputs" not in values, message

    predictor, _ = open_instance_predictor(str(model), threads=1)
    pipeline = InstancePipeline(predictor, InstanceSettings())
    with_depth = instance_results(instances_from_messages(pipeline, images[0], infos[0], depths[0])[0])
    without = instance_results(instances_from_messages(pipeline, images[0], infos[0])[0])
    published = instance_results(arrays[0])
    grasps = [(got.grasp, want.grasp, flat.grasp) for got, want, flat in zip(published, with_depth, without)
              if got.grasp is not None]
    assert len(published) == len(with_depth) and grasps
    for got, want, flat in grasps:
        np.testing.assert_allclose(got.position, want.position, atol=1e-6)
        assert abs(got.position[2] - flat.position[2]) > 1e-3  # the depth changed the heights


# --- the demo --------------------------------------------------------------------------------------------

def truth_array(sec: int, index: int) -> InstanceArray:
    header = Header(stamp=Time(sec=sec), frame_id="camera_optical_frame")
    return instance_array(header, (120, 160), scene_truth(scene(4, index)))


def test_demo_scores_each_array_against_its_own_scene(tmp_path):
    """Arrays heard for frames 1, 2, 3 and 4 of a 3-scene source that looped (frame 3 is scene 0): the
    scenes' own ground truth scores perfectly, as it must when each array meets its scene."""
    frames = [(sec, 0) for sec in range(10, 15)]  # the CameraInfo stamps of frames 0-4
    arrays = [((10 + k, 0), truth_array(10 + k, k % 3), float(k)) for k in (1, 2, 3, 4)]
    options = open_source(SMALL).options
    strip = tmp_path / "strip.png"
    figures = _sticks_figures(SimpleNamespace(frames=frames, arrays=arrays), 5, options, str(strip))
    assert figures["frames_scored"] == figures["instance_arrays"] == 4 and figures["fps"] == 1.0
    assert figures["mask_AP"] == figures["mask_AP50"] == 1.0 and figures["grasp_success_rate"] == 1.0
    assert figures["grasps"] == sum(i.has_grasp for _, a, _ in arrays for i in a.instances) > 0
    assert cv2.imread(str(strip)).shape[1] > 2 * 480

    shifted = [((10 + k, 0), truth_array(10 + k, (k + 1) % 3), float(k)) for k in (1, 2, 3, 4)]
    figures = _sticks_figures(SimpleNamespace(frames=frames, arrays=shifted), 5, options, str(strip))
    assert figures["mask_AP"] < 0.2
    unheard = _sticks_figures(SimpleNamespace(frames=frames[1:], arrays=arrays), 5, options, str(strip))
    assert "mask_AP" not in unheard and unheard["not_scored"] == "the listener heard 4 of 5 frames"


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_demo_sticks_runs_the_graph_scores_it_and_writes_a_strip(tmp_path, model: Path):
    strip = tmp_path / "sticks.png"
    result = run("demo", "sticks", "--frames", "4", "--source", "synthetic:sticks?frames=4&width=160&height=120",
                 "--rate", "0", "--model", str(model), "--strip", str(strip), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["camera_source"]["processed"] == 4
    segmenter = figures["instance_segmenter"]
    assert not segmenter["model_error"] and "depth" not in segmenter["status"]
    assert segmenter["received"] == segmenter["processed"] + segmenter["dropped"] and segmenter["processed"] >= 1
    assert segmenter["latency_ms"]["p50"] > 0
    sticks = figures["sticks"]
    assert sticks["frames"] == 4 and sticks["instance_arrays"] == segmenter["instance_arrays_published"]
    assert sticks["frames_scored"] == sticks["instance_arrays"] and "not_scored" not in sticks
    assert sticks["instances_per_frame"] > 0 and sticks["grasps"] > 0  # the banded model's bands get grasps
    assert 0 <= sticks["mask_AP"] <= 1 and sticks["grasp_frames"] == sticks["frames_scored"]
    assert sticks["strip"] == str(strip) and cv2.imread(str(strip)).shape[1] > 480

    text = run("demo", "sticks", "--frames", "2", "--source", "synthetic:sticks?frames=2&width=160&height=120",
               "--model", str(model), "--strip", str(tmp_path / "again.png"))
    assert text.returncode == 0, text.stderr[-2000:]
    assert "2 frames of synthetic:sticks" in text.stdout and "frames scored: mask AP" in text.stdout


@pytest.mark.parametrize("source, message", [("drive.mp4", "demo sticks plays synthetic:sticks"),
                                             ("synthetic:sticks?frames=0", "needs frames >= 1")])
def test_demo_sticks_refuses_other_sources(source, message):
    result = run("demo", "sticks", "--source", source, timeout=60)
    assert result.returncode == 2 and message in result.stderr
