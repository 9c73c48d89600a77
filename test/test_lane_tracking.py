"""Lane track ids over synthetic drives (the generator's boundary ids are the truth) and on hand-made
lanes: Hungarian matching, gating, smoothing, missed frames and fresh ids."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from refine_perception.core.camera import PinholeCamera
from refine_perception.data.synthetic.road import drive
from refine_perception.lanes.ground import LaneGeometryError, project_lanes
from refine_perception.lanes.tracking import LaneTracker, mean_gap

FRAMES, FPS = 40, 10.0
DROPPED = 15  # the frame that loses the lane just left of the ego vehicle
# seed 3: 19 m/s, a lane change from 0.9 s to 4.4 s; seed 9: 7.6 m/s, a sharp one from 0.5 s to 3.3 s,
# turning the view by up to 13 degrees
SEEDS = (3, 9)

Frame = tuple[PinholeCamera, list[tuple[int, int, np.ndarray]]]  # camera, (id, slot, image points) per lane


@pytest.fixture(scope="module")
def drives() -> dict[int, list[Frame]]:
    return {
        seed: [(s.camera, [(lane.id, lane.slot, lane.image_points) for lane in s.lanes])
               for s in drive(seed, FRAMES, FPS, 820, 295)]
        for seed in SEEDS
    }  # fmt: skip


def _run(frames: list[Frame], ground: Callable[[int], bool]) -> list[list[tuple[int, int]]]:
    """(generator id, track id) per lane per frame: the lanes with 1 px of noise, one dropped in frame
    DROPPED, projected onto the road in the frames where `ground(frame)` holds."""
    rng = np.random.default_rng(0)
    tracker = LaneTracker()
    out = []
    for index, (camera, lanes) in enumerate(frames):
        lanes = [lane for lane in lanes if not (index == DROPPED and lane[1] == -1)]
        image = [points + rng.normal(0.0, 1.0, points.shape) for _, _, points in lanes]
        ids = tracker.update(image, project_lanes(camera, image) if ground(index) else None)
        out.append([(lane[0], track) for lane, track in zip(lanes, ids)])
    return out


def _assert_one_to_one(pairs_per_frame: list[list[tuple[int, int]]]) -> None:
    pairs = {pair for frame in pairs_per_frame for pair in frame}
    truth, tracks = zip(*pairs)
    assert len(set(truth)) == len(pairs) == len(set(tracks)), sorted(pairs)  # no id switch, no split


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("space", ["ground", "image"])
def test_ids_follow_the_boundaries(drives: dict[int, list[Frame]], seed: int, space: str) -> None:
    frames = drives[seed]
    pairs = _run(frames, lambda index: space == "ground")
    _assert_one_to_one(pairs)
    # the drive has what the test is about: the ego vehicle changes lanes, so the boundary on its left
    # changes, and a lane that was dropped for one frame comes back
    left = [truth for _, lanes in frames for truth, slot, _ in lanes if slot == -1]
    assert left[0] != left[-1]
    dropped = next(truth for truth, slot, _ in frames[DROPPED][1] if slot == -1)
    before, after = (dict(pairs[DROPPED + k]) for k in (-1, 1))
    assert dropped not in dict(pairs[DROPPED]) and before[dropped] == after[dropped]


def test_new_boundaries_get_fresh_ids(drives: dict[int, list[Frame]]) -> None:
    pairs = _run(drives[3], lambda index: True)
    first = dict(pairs[0])
    late = {truth: track for frame in pairs for truth, track in frame if truth not in first}
    assert late, "no boundary comes into view during the drive"
    assert min(late.values()) > max(first.values())
    gone = set(first) - {truth for truth, _ in pairs[-1]}
    assert gone, "no boundary leaves the view during the drive"
    assert not {first[truth] for truth in gone} & {track for _, track in pairs[-1]}


def test_ground_arriving_late_and_dropping_out(drives: dict[int, list[Frame]]) -> None:
    # no camera model for the first five frames, and none again for frames 20 to 22: the tracker moves
    # between image and ground matching without losing an id
    _assert_one_to_one(_run(drives[3], lambda index: index >= 5 and not 20 <= index <= 22))


def _vertical(u: float, top: float = 100.0, bottom: float = 300.0) -> np.ndarray:
    """A straight image lane at column u from row `bottom` up to row `top`, every 10 rows."""
    rows = np.arange(bottom, top - 1, -10.0)
    return np.column_stack([np.full_like(rows, u), rows])


def test_hungarian_beats_greedy() -> None:
    # tracks at 100 and 104 px, lanes at 101 and 98: greedy takes 100-101 (1 px), then 104-98 (6 px);
    # the optimum pairs 100-98 (2 px) and 104-101 (3 px)
    tracker = LaneTracker()
    assert tracker.update([_vertical(100.0), _vertical(104.0)]) == [0, 1]
    assert tracker.update([_vertical(101.0), _vertical(98.0)]) == [1, 0]


def test_smoothing_on_the_grid() -> None:
    tracker = LaneTracker(smoothing=0.7)
    tracker.update([_vertical(100.0, top=100.0, bottom=300.0)])
    tracker.update([_vertical(110.0, top=150.0, bottom=400.0)])
    (track,) = tracker.tracks
    rows = tracker.rows
    np.testing.assert_allclose(track.image[(rows >= 150) & (rows <= 300)], 0.7 * 110 + 0.3 * 100)
    np.testing.assert_allclose(track.image[(rows > 300) & (rows <= 400)], 110.0)
    assert np.isnan(track.image[(rows < 150) | (rows > 400)]).all()  # the track spans what it last saw


def test_missed_frames_then_the_track_ends() -> None:
    tracker = LaneTracker(max_missed=2)
    lane, other = _vertical(100.0), _vertical(300.0)
    assert tracker.update([lane, other]) == [0, 1]
    assert tracker.update([other]) == [1]
    assert tracker.update([other]) == [1]
    assert [t.missed for t in tracker.tracks] == [2, 0]
    assert tracker.update([lane, other]) == [0, 1]  # missed twice: still track 0
    for _ in range(3):
        tracker.update([other])
    assert [t.id for t in tracker.tracks] == [1]  # missed three times: ended
    assert tracker.update([lane, other]) == [2, 1]  # the same place gets a new id, 0 is not reused
    assert tracker.update([]) == [] and tracker.update([_vertical(500.0)]) == [3]


def test_gate_on_the_ground() -> None:
    x = np.linspace(5.0, 50.0, 20)
    tracker = LaneTracker(ground_gate=1.5)
    image = [_vertical(100.0)]  # image points are required, but the ground decides
    assert tracker.update(image, [np.column_stack([x, np.full_like(x, 1.0)])]) == [0]
    assert tracker.update(image, [np.column_stack([x, np.full_like(x, 2.2)])]) == [0]  # 1.2 m: same lane
    # the track now lies at 0.7 * 2.2 + 0.3 * 1.0 = 1.84 m; 4 m is 2.16 m from it: another lane
    assert tracker.update(image, [np.column_stack([x, np.full_like(x, 4.0)])]) == [1]
    assert [t.missed for t in tracker.tracks] == [1, 0]


def test_mean_gap_over_shared_positions() -> None:
    tracks = np.array([[0.0, 1.0, np.nan, 3.0]])
    lanes = np.array([[1.0, 1.0, 5.0, np.nan], [np.nan, np.nan, np.nan, 0.0], [2.0, 3.0, 4.0, 7.0]])
    np.testing.assert_allclose(mean_gap(tracks, lanes, min_shared=2), [[0.5, np.inf, 8 / 3]])
    assert mean_gap(np.zeros((0, 4)), lanes, 2).shape == (0, 3)


def test_bad_input_is_named() -> None:
    tracker = LaneTracker()
    with pytest.raises(LaneGeometryError, match=r"image lane 1 must have shape \(N, 2\), got \(3, 3\)"):
        tracker.update([_vertical(100.0), np.zeros((3, 3))])
    with pytest.raises(LaneGeometryError, match="image lane 0 contains NaN"):
        tracker.update([np.array([[np.nan, 100.0]])])
    with pytest.raises(LaneGeometryError, match="2 ground lanes for 1 image lanes"):
        tracker.update([_vertical(100.0)], [np.zeros((2, 3)), np.zeros((2, 3))])
    with pytest.raises(LaneGeometryError, match=r"ground lane 0 must have shape \(N, 2\) or \(N, 3\)"):
        tracker.update([_vertical(100.0)], [np.zeros((2, 4))])
    assert tracker.tracks == ()  # a rejected frame changes nothing
    for bad in ({"smoothing": 0.0}, {"max_missed": -1}, {"ground_gate": 0.0}, {"min_shared": 0}):
        with pytest.raises(LaneGeometryError):
            LaneTracker(**bad)
