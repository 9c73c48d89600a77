"""The street segmenter's ROS-free parts: the mask tracker (ids kept by overlap, class by class, across a
short absence, forgotten after a reset), the pipeline's stage choice and score threshold, and the synthetic
street camera source (each scene rendered once, equal to the dataset's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from street_checks import write_car_model

from refine_perception.core.frame_sources import SourceError, open_source
from refine_perception.data.synthetic.street import render_street
from refine_perception.segmentation.pipeline import StreetPipeline, StreetSettings, open_street_predictor
from refine_perception.segmentation.tracking import MaskTracker


def box(x0: int, x1: int, y0: int = 8, y1: int = 24) -> np.ndarray:
    mask = np.zeros((32, 64), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_tracker_keeps_ids_by_overlap_and_class() -> None:
    tracker = MaskTracker(min_iou=0.3, max_missed=1)
    first = tracker.update([26, 26, 24], [box(0, 16), box(32, 48), box(20, 28)])
    assert first == [1, 2, 3]
    # the cars moved a little and swapped order; a person now overlaps the first car's old place
    assert tracker.update([26, 24, 26], [box(36, 52), box(2, 14), box(4, 20)]) == [2, 4, 1]
    # the second car hides for a frame and comes back with its id; after two frames it is gone
    assert tracker.update([26], [box(4, 20)]) == [1]
    assert tracker.update([26, 26], [box(4, 20), box(36, 52)]) == [1, 2]
    tracker.update([], [])
    tracker.update([], [])
    assert tracker.update([26], [box(4, 20)]) == [5]
    tracker.reset()
    assert tracker.update([26], [box(4, 20)]) == [6]  # ids are never handed out twice
    with pytest.raises(ValueError):
        tracker.update([26, 24], [box(0, 4)])
    with pytest.raises(ValueError):
        MaskTracker(min_iou=0.0)


def test_pipeline_stage_and_threshold(tmp_path: Path) -> None:
    predictor, _ = open_street_predictor(str(write_car_model(tmp_path / "cars.safetensors")), threads=1)
    image = render_street(np.random.SeedSequence([2, 0]), 256, 128).image
    finest = StreetPipeline(predictor, StreetSettings())(image)
    assert finest.label_ids.shape == (128, 256) and set(np.unique(finest.label_ids).tolist()) == {26}
    assert len(finest.results) >= 2 and all(r.class_name == "car" for r in finest.results)
    assert sorted(finest.track_ids) == list(range(1, len(finest.results) + 1))
    assert set(finest.timings_ms) == {"network", "labels", "instances", "tracking"}
    coarsest = StreetPipeline(predictor, StreetSettings(stage=1, score_threshold=1.01))(image)
    assert not coarsest.results and not np.array_equal(coarsest.label_ids, finest.label_ids)
    with pytest.raises(ValueError, match="stage"):
        StreetPipeline(predictor, StreetSettings(stage=6))
    # without instances the network stops at the stage published, with the same map as the full network's
    settings = StreetSettings(stage=2, instances=False)
    early, _ = open_street_predictor(str(tmp_path / "cars.safetensors"), backend="torch", threads=1, settings=settings)
    assert (early.stages, early.embedding) == (2, False)
    assert np.array_equal(StreetPipeline(early, settings)(image).label_ids,
                          StreetPipeline(predictor, settings)(image).label_ids)
    with pytest.raises(ValueError, match="not computed"):
        StreetPipeline(early, StreetSettings(stage=3, instances=False))
    with pytest.raises(ValueError, match="not computed"):
        StreetPipeline(early, StreetSettings(stage=2))


def test_synthetic_street_source_renders_each_scene_once() -> None:
    source = open_source("synthetic:street?frames=2&width=128&height=64&seed=4")
    frames = list(source)
    again = list(source)
    assert len(frames) == 2 and all(a is b for a, b in zip(frames, again))
    scene = render_street(np.random.SeedSequence([4, 1]), 128, 64)
    assert np.array_equal(frames[1].image, scene.image) and np.allclose(frames[1].camera_matrix, scene.camera.K)
    with pytest.raises(SourceError, match="unknown option"):
        open_source("synthetic:street?colour=red")


def test_tracker_keeps_a_thin_object() -> None:
    """A 3 px wide pole-like person keeps its id although it falls between every 4th column."""
    mask = np.zeros((64, 640), bool)
    mask[10:40, 501:504] = True
    tracker = MaskTracker()
    assert [tracker.update([24], [mask]) for _ in range(3)] == [[1], [1], [1]] and len(tracker.tracks) == 1


def test_non_finite_network_output_is_refused(tmp_path: Path) -> None:
    predictor, _ = open_street_predictor(str(write_car_model(tmp_path / "cars.safetensors")), threads=1)
    run = predictor.run
    predictor.run = lambda batch: tuple(np.full_like(out, np.nan) for out in run(batch))
    with pytest.raises(FloatingPointError):
        predictor([np.zeros((128, 256, 3), np.uint8)])


def test_tiny_images_give_no_empty_instances(tmp_path: Path) -> None:
    predictor, _ = open_street_predictor(str(write_car_model(tmp_path / "cars.safetensors")), threads=1)
    for size in ((1, 1), (3, 7), (2, 300)):
        (result,) = predictor([np.full((*size, 3), 90, np.uint8)])
        assert result.stage_labels[-1].shape == size and all(p.mask.any() for p in result.instances)
