"""Frame sources, calibration files and running statistics (ROS-free core)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from refine_perception.core.calibration import CalibrationError, load_calibration
from refine_perception.core.frame_sources import SourceError, default_camera_matrix, open_source
from refine_perception.core.stats import FrameCounters, LatencyWindow, RateMeter, interleaved_median_ms


def frames(n: int, shape=(48, 64)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (*shape, 3), dtype=np.uint8) for _ in range(n)]


def test_folder_source_reads_images_in_name_order(tmp_path):
    images = frames(3)
    for i, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), image)
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path), fps=7.0)
    assert len(source) == 3 and source.fps == 7.0
    out = list(source)
    assert [f.index for f in out] == [0, 1, 2]
    for frame, image in zip(out, images):
        np.testing.assert_array_equal(frame.image, image)
    assert len(open_source(str(tmp_path / "frame_00[12].png"))) == 2


def test_video_source_decodes_every_frame(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 48))
    for image in frames(5):
        writer.write(image)
    writer.release()
    source = open_source(str(path))
    assert source.fps == pytest.approx(12.0)
    out = list(source)
    assert len(out) == 5 and out[0].image.shape == (48, 64, 3)
    assert len(list(source)) == 5, "a source can be iterated again (looping)"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing"), "no images"),
        (lambda p: str(p), "no images"),
        (lambda p: (p / "x.txt").write_text("x") and str(p / "x.txt"), "not a video file"),
        (lambda p: (p / "broken.mp4").write_bytes(b"\0" * 100) and str(p / "broken.mp4"), "cannot open"),
        (lambda p: "", "no source"),
    ],
)
def test_source_errors_say_what_is_wrong(tmp_path, make, message):
    with pytest.raises(SourceError, match=message):
        open_source(make(tmp_path))


def test_unreadable_image_in_folder_names_the_file(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match="a.png: not a readable image"):
        list(open_source(str(tmp_path)))


def test_default_camera_matrix_matches_field_of_view():
    K = default_camera_matrix(640, 480, 90.0)
    # tan(45 deg) = 1, so the focal length is half the width.
    np.testing.assert_allclose(K, [[320, 0, 320], [0, 320, 240], [0, 0, 1]])


CALIBRATION = """
image_width: 640
image_height: 480
camera_name: front
camera_matrix: {rows: 3, cols: 3, data: [500, 0, 320, 0, 505, 240, 0, 0, 1]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [-0.1, 0.01, 0, 0, 0]}
rectification_matrix: {rows: 3, cols: 3, data: [1, 0, 0, 0, 1, 0, 0, 0, 1]}
projection_matrix: {rows: 3, cols: 4, data: [500, 0, 320, 0, 0, 505, 240, 0, 0, 0, 1, 0]}
"""


def test_calibration_file_round_values(tmp_path):
    path = tmp_path / "front.yaml"
    path.write_text(CALIBRATION)
    calib = load_calibration(path)
    assert (calib.width, calib.height, calib.camera_name) == (640, 480, "front")
    assert calib.K[1, 1] == 505 and calib.D[0] == -0.1 and calib.P.shape == (3, 4)


@pytest.mark.parametrize(
    "text, message",
    [
        (CALIBRATION.replace("0, 505, 240, 0, 0, 1]", "0, 505, 240, 0, 0]"), "camera_matrix has 8 values"),
        (CALIBRATION.replace("image_width: 640", "image_width: wide"), "must be integers"),
        (CALIBRATION.replace("data: [-0.1", "data: [.nan"), "NaN"),
        ("[1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_calibration_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message):
        load_calibration(path)
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "absent.yaml")


def test_rate_meter_counts_events_in_window():
    meter = RateMeter(window_s=5.0)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)  # 10 Hz for one second
    assert meter.rate(101.0) == pytest.approx(10.0)
    assert meter.rate(200.0) == 0.0, "old events leave the window"


def test_latency_window_percentiles_and_bound():
    window = LatencyWindow(size=100)
    for ms in range(1, 201):  # only the last 100 (101..200 ms) are kept
        window.add(ms / 1000)
    summary = window.summary_ms()
    assert len(window) == 100
    assert summary["max"] == pytest.approx(200) and summary["mean"] == pytest.approx(150.5)
    assert summary["p50"] == pytest.approx(150.5) and summary["p95"] == pytest.approx(195.05)
    assert LatencyWindow().summary_ms() == {}


def test_interleaved_timing_takes_turns():
    """Candidates alternate, each turn led by an untimed call, so a machine's slow spell hits all alike."""
    calls: list[str] = []
    medians = interleaved_median_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                    rounds=2, per_turn=2, warmup=1)
    assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert set(medians) == {"a", "b"} and all(ms >= 0.0 for ms in medians.values())


def test_frame_counters():
    counters = FrameCounters()
    for _ in range(3):
        counters.count_received()
    counters.count_processed()
    counters.count_dropped("stale")
    counters.count_dropped("malformed")
    assert counters.as_dict() == {
        "received": 3, "processed": 1, "dropped": 2, "dropped_malformed": 1, "dropped_stale": 1
    }


def test_synthetic_drive_source_gives_frames_with_intrinsics():
    source = open_source("synthetic:drive?frames=2&width=320&height=160&seed=3")
    frames = list(source)
    assert len(source) == 2 and source.fps == 10.0
    assert [f.image.shape for f in frames] == [(160, 320, 3)] * 2
    sample = frames[0].extras["sample"]
    np.testing.assert_array_equal(frames[0].camera_matrix, sample.camera.K)
    assert sample.lanes, "the drive's frames carry their lane ground truth"
    again = list(open_source("synthetic:drive?frames=2&width=320&height=160&seed=3"))
    np.testing.assert_array_equal(again[1].image, frames[1].image)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:drive?speed=3", "unknown option 'speed'"),
        ("synthetic:drive?fps=fast", "not a valid float"),
        ("synthetic:drive?frames=0", "needs frames >= 1"),
    ],
)
def test_synthetic_drive_source_rejects_bad_options(spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec)
