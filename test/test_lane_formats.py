"""Readers and writers of the TuSimple, CULane and CurveLanes lane formats, on fixture files written in the
official layouts (test/fixtures/lanes)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from refine_perception.data.formats.culane import (
    CULaneDataset,
    CULaneEntry,
    lines_path,
    read_culane_categories,
    read_culane_lines,
    read_culane_list,
    write_culane_lines,
    write_culane_list,
)
from refine_perception.data.formats.curvelanes import (
    CurveLanesDataset,
    read_curvelanes_json,
    write_curvelanes_json,
)
from refine_perception.data.formats.lanes import AnnotationError
from refine_perception.data.formats.tusimple import (
    H_SAMPLES,
    TuSimpleDataset,
    TuSimpleRecord,
    read_tusimple,
    write_tusimple,
)

FIXTURES = Path(__file__).parent / "fixtures" / "lanes"
TUSIMPLE = FIXTURES / "tusimple"
CULANE = FIXTURES / "culane"
CURVELANES = FIXTURES / "curvelanes"


# ---------------------------------------------------------------------------------------------- TuSimple


def test_tusimple_labels_read_with_their_rows_and_lanes() -> None:
    records = read_tusimple(TUSIMPLE / "label_data.json")
    assert [len(r.xs) for r in records] == [4, 5, 3]
    first = records[0]
    assert first.raw_file == "clips/0313-1/6040/20.jpg"
    assert first.h_samples.tolist() == list(range(160, 720, 10)) == list(H_SAMPLES)
    assert first.xs.shape == (4, 56) and first.run_time is None
    assert records[1].h_samples[0] == 240 and records[1].xs.shape == (5, 48)
    # lane 1 has points from row 260 down to 710: 46 rows, listed bottom (y=710) to top (y=260)
    lane = first.lanes()[1]
    assert lane.shape == (46, 2)
    assert lane[0].tolist() == [435.0, 710.0] and lane[-1].tolist() == [638.0, 260.0]
    assert np.all(np.diff(lane[:, 1]) < 0)


def test_tusimple_predictions_need_run_time() -> None:
    preds = read_tusimple(TUSIMPLE / "predictions.json", prediction=True)
    assert [p.run_time for p in preds] == [8.2, 8.0, 9.1]
    assert preds[0].xs[1, 10] == 641.5  # floats are kept
    with pytest.raises(AnnotationError, match=r"label_data.json:1: missing key\(s\) run_time"):
        read_tusimple(TUSIMPLE / "label_data.json", prediction=True)


def test_tusimple_malformed_line_names_file_and_line() -> None:
    with pytest.raises(AnnotationError) as caught:
        read_tusimple(TUSIMPLE / "broken_label.json")
    assert caught.value.line == 2 and caught.value.path.name == "broken_label.json"
    assert "lane 0 has 55 x values for 56 h_samples" in str(caught.value)


def test_tusimple_dataset_skips_bad_lines_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    strict = TuSimpleDataset(TUSIMPLE, ["broken_label.json"])
    with pytest.raises(AnnotationError):
        list(strict)
    lenient = TuSimpleDataset(TUSIMPLE, ["label_data.json", "broken_label.json"], skip_bad=True)
    with caplog.at_level(logging.WARNING):
        samples = list(lenient)
    assert len(lenient) == 9 and len(samples) == 5
    assert [e.line for e in lenient.skipped] == [2, 3, 4, 5]
    problems = [e.problem for e in lenient.skipped]
    assert "h_samples" in problems[1] and "NaN" in problems[2] and "not valid json" in problems[3]
    assert len([r for r in caplog.records if "skipping sample" in r.message]) == 4
    assert samples[0].image == TUSIMPLE / "clips/0313-1/6040/20.jpg"


def test_tusimple_write_read_round_trip(tmp_path: Path) -> None:
    records = read_tusimple(TUSIMPLE / "predictions.json", prediction=True)
    write_tusimple(tmp_path / "out.json", records)
    again = read_tusimple(tmp_path / "out.json", prediction=True)
    for a, b in zip(records, again):
        assert a.raw_file == b.raw_file and a.run_time == b.run_time
        np.testing.assert_array_equal(a.xs, b.xs)
        np.testing.assert_array_equal(a.h_samples, b.h_samples)
    # ground truth keeps the official integer look: "-2", not "-2.0"
    write_tusimple(tmp_path / "gt.json", read_tusimple(TUSIMPLE / "label_data.json"))
    line = (tmp_path / "gt.json").read_text().splitlines()[0]
    assert json.loads(line) == json.loads((TUSIMPLE / "label_data.json").read_text().splitlines()[0])
    assert "-2.0" not in line


def test_tusimple_from_lanes_samples_rows_inside_the_lane() -> None:
    # A straight lane from (200, 600) to (100, 700): x = 200 - (y - 600). Rows 560, 580, ..., 700: the two
    # above 600 get -2, rows 600..700 get 200, 180, ..., 100; with image_width=150 the x values >= 150
    # (rows 600, 620, 640) become -2 as well.
    lane = np.array([[100.0, 700.0], [200.0, 600.0]])
    record = TuSimpleRecord.from_lanes("a.jpg", [lane], h_samples=range(560, 720, 20))
    assert record.xs.tolist() == [[-2, -2, 200, 180, 160, 140, 120, 100]]
    clipped = TuSimpleRecord.from_lanes("a.jpg", [lane], h_samples=range(560, 720, 20), image_width=150)
    assert clipped.xs.tolist() == [[-2, -2, -2, -2, -2, 140, 120, 100]]
    with pytest.raises(ValueError, match="lane 0: contains NaN"):
        TuSimpleRecord.from_lanes("a.jpg", [np.array([[np.nan, 1.0], [2.0, 3.0]])])


# ------------------------------------------------------------------------------------------------- CULane


def test_culane_list_files() -> None:
    train = read_culane_list(CULANE / "list" / "train_gt.txt")
    assert train[1] == CULaneEntry(
        "driver_23_30frame/05151649_0422.MP4/00030.jpg",
        "laneseg_label_w16/driver_23_30frame/05151649_0422.MP4/00030.png",
        (False, True, True, False),
    )
    test = read_culane_list(CULANE / "list" / "test.txt")
    assert [e.image for e in test][0] == "driver_100_30frame/05251517_0433.MP4/00000.jpg"
    assert test[0].seg_label is None and test[0].exists is None
    categories = read_culane_categories(CULANE)
    assert categories == {
        "driver_100_30frame/05251517_0433.MP4/00000.jpg": "normal",
        "driver_193_90frame/06042010_0511.MP4/00120.jpg": "cross",
        "driver_37_30frame/05181432_0203.MP4/00090.jpg": "night",
    }
    with pytest.raises(AnnotationError, match=r"list.txt:1: expected 'image' or .* got 5 fields"):
        read_culane_list(CULANE / "broken" / "list.txt")


def test_culane_list_write_read_round_trip(tmp_path: Path) -> None:
    entries = read_culane_list(CULANE / "list" / "train_gt.txt")
    write_culane_list(tmp_path / "train_gt.txt", entries)
    assert (tmp_path / "train_gt.txt").read_text() == (CULANE / "list" / "train_gt.txt").read_text()
    assert read_culane_list(tmp_path / "train_gt.txt") == entries


def test_culane_lines_file() -> None:
    path = lines_path(CULANE, "/driver_23_30frame/05151649_0422.MP4/00000.jpg")
    assert path == CULANE / "driver_23_30frame/05151649_0422.MP4/00000.lines.txt"
    lanes = read_culane_lines(path)
    assert [len(lane) for lane in lanes] == [19, 34, 34, 16]
    assert lanes[0][0].tolist() == [-20.4835, 590.0]  # off-image x kept as written
    assert lanes[3][0].tolist() == [1602.87, 560.0]
    assert read_culane_lines(CULANE / "driver_193_90frame/06042010_0511.MP4/00120.lines.txt") == ()


def test_culane_lines_top_to_bottom_is_reordered(tmp_path: Path) -> None:
    (tmp_path / "a.lines.txt").write_text("10 300 20 400 30 500\n")
    (lane,) = read_culane_lines(tmp_path / "a.lines.txt")
    assert lane.tolist() == [[30, 500], [20, 400], [10, 300]]


def test_culane_lines_write_read_round_trip(tmp_path: Path) -> None:
    lanes = [np.array([[532.007, 590.0], [541.123456789, 580.0]]), np.array([[-3.25, 590.0], [1.0, 585.5]])]
    target = tmp_path / "pred" / "driver_x" / "00000.lines.txt"
    write_culane_lines(target, lanes)
    assert target.read_text().splitlines()[0] == "532.007 590 541.123456789 580"
    for a, b in zip(read_culane_lines(target), lanes):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("name", "line", "problem"),
    [
        ("odd.lines.txt", 2, "5 values, expected x y pairs"),
        ("word.lines.txt", 3, "value 4 is 'abc', expected a number"),
        ("nan.lines.txt", 1, "value 3 is 'nan', expected a finite number"),
    ],
)
def test_culane_malformed_lines(name: str, line: int, problem: str) -> None:
    with pytest.raises(AnnotationError) as caught:
        read_culane_lines(CULANE / "broken" / name)
    assert caught.value.line == line and caught.value.problem == problem
    assert str(caught.value) == f"{CULANE / 'broken' / name}:{line}: {problem}"


def test_culane_missing_file() -> None:
    missing = CULANE / "driver_0/none.lines.txt"
    with pytest.raises(AnnotationError, match="file not found"):
        read_culane_lines(missing)
    assert read_culane_lines(missing, missing_ok=True) == ()  # a missing prediction = no lanes


def test_culane_dataset_with_categories_and_skipping() -> None:
    test = CULaneDataset(CULANE, "list/test.txt")
    samples = list(test)
    assert [s.category for s in samples] == ["normal", "cross", "night"]
    assert [len(s.lanes) for s in samples] == [4, 0, 2]
    assert samples[0].image == CULANE / "driver_100_30frame/05251517_0433.MP4/00000.jpg"
    broken = CULaneDataset(CULANE, "list/train_broken.txt", skip_bad=True)
    assert len(list(broken)) == 2
    skipped = [(e.path.name, e.line) for e in broken.skipped]
    assert skipped == [("odd.lines.txt", 2), ("missing.lines.txt", None)]
    with pytest.raises(AnnotationError, match="odd.lines.txt:2"):
        list(CULaneDataset(CULANE, "list/train_broken.txt"))


# --------------------------------------------------------------------------------------------- CurveLanes


def test_curvelanes_labels() -> None:
    data = CurveLanesDataset(CURVELANES, "train")
    assert len(data) == 2
    sample = data[0]
    assert sample.image == CURVELANES / "train/images/6a0a8e1a2f8d6f5c2a4b3c1d0e9f8a7b.jpg"
    assert [len(lane) for lane in sample.lanes] == [17, 17, 12]
    assert sample.lanes[0][0].tolist() == [1009.0, 1439.0]
    # lane 1 is stored top to bottom in the file; it comes back bottom to top
    assert sample.lanes[1][0].tolist() == [1651.0, 1439.0]
    assert all(np.all(np.diff(lane[:, 1]) < 0) for lane in sample.lanes)
    assert data[1].lanes[0].shape == (17, 2)


def test_curvelanes_write_read_round_trip(tmp_path: Path) -> None:
    lanes = read_curvelanes_json(CURVELANES / "train/labels/6a0a8e1a2f8d6f5c2a4b3c1d0e9f8a7b.lines.json")
    write_curvelanes_json(tmp_path / "x.lines.json", lanes)
    doc = json.loads((tmp_path / "x.lines.json").read_text())
    assert doc["Lines"][0][0] == {"x": "1009.0", "y": "1439.0"}  # strings, as in the dataset
    for a, b in zip(read_curvelanes_json(tmp_path / "x.lines.json"), lanes):
        np.testing.assert_array_equal(a, b)


def test_curvelanes_malformed_labels_are_skipped_and_named() -> None:
    data = CurveLanesDataset(CURVELANES, "valid", skip_bad=True)
    assert len(list(data)) == 2
    by_file = {e.path.stem.split(".")[0]: e for e in data.skipped}
    assert "Lines[0][1].x is '4x1.5'" in by_file["d41d8cd98f00b204e9800998ecf8427e"].problem
    assert by_file["9e107d9d372bb6826bd81d3542a419d6"].line == 2  # the json syntax error is on line 2
    assert 'a "Lines" list' in by_file["e4d909c290d0fb1ca068ffaddf22cbd0"].problem
    with pytest.raises(AnnotationError):
        list(CurveLanesDataset(CURVELANES, "valid"))
