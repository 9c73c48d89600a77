"""Boundary refinement as a stage of both segmentation pipelines and nodes: with a refiner that calls every
patch pixel foreground, each instance mask becomes itself plus its patches (so the stage runs on the right
masks and pastes back where it should), timings reach /diagnostics, and a refiner that cannot be opened
leaves the node running with unrefined masks and says why."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from instance_checks import write_banded_model
from street_checks import write_car_model

from refine_perception.boundaries.figure import RefinedFrame, comparison_figure
from refine_perception.boundaries.stage import BoundaryStage
from refine_perception.data.synthetic.sticks import render_sticks
from refine_perception.data.synthetic.street import render_street
from refine_perception.instances.pipeline import InstancePipeline, InstanceSettings, open_instance_predictor
from refine_perception.models.bpr.network import BoundaryRefiner
from refine_perception.models.bpr.patches import propose_patches
from refine_perception.models.bpr.refine import INFERENCE_NMS
from refine_perception.models.bpr.weights import save_bpr
from refine_perception.runtime import RuntimeConfig
from refine_perception.segmentation.pipeline import StreetPipeline, StreetSettings, open_street_predictor

TORCH = RuntimeConfig("torch", "cpu", "fp32")


@pytest.fixture(scope="module")
def everywhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A refiner whose every output pixel is foreground (logit 20)."""
    net = BoundaryRefiner((4, 8), patch_size=32, input_size=32)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(20.0)
    path = tmp_path_factory.mktemp("bpr") / "everywhere.safetensors"
    save_bpr(path, net.eval())
    return path


def grown(mask: np.ndarray, nms: float) -> np.ndarray:
    out = mask.copy()
    for x0, y0, x1, y1 in propose_patches(mask, 32, nms):
        out[y0:y1, x0:x1] = True
    return out


def test_the_instance_pipeline_refines_every_mask(everywhere: Path, tmp_path: Path) -> None:
    predictor, _ = open_instance_predictor(str(write_banded_model(tmp_path / "banded.safetensors")), threads=1)
    scene = render_sticks(np.random.SeedSequence([2, 1]), 320, 240)
    plain = InstancePipeline(predictor, InstanceSettings(grasps=False))(scene.image).results
    stage = BoundaryStage.open(str(everywhere), "sticks", TORCH, nms_threshold=0.3)
    settings = InstanceSettings(grasps=False, refine_boundaries=True, boundary_nms=0.3)
    refined = InstancePipeline(predictor, settings, stage)(scene.image).results
    assert len(refined) == len(plain) > 0
    for before, after in zip(plain, refined):
        assert np.array_equal(after.mask, grown(before.mask, 0.3)) and after.box is not None
    assert stage.last.instances == len(plain) and stage.last.patches > 0 and stage.last.ms > 0
    assert set(stage.diagnostic_values()) == {"boundary_ms", "boundary_ms_per_instance", "boundary_patches"}
    off = InstancePipeline(predictor, InstanceSettings(grasps=False), stage)(scene.image).results
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(off, plain))  # refine_boundaries false: untouched


def test_the_street_pipeline_refines_every_instance(everywhere: Path, tmp_path: Path) -> None:
    predictor, _ = open_street_predictor(str(write_car_model(tmp_path / "cars.safetensors")), threads=1)
    image = render_street(np.random.SeedSequence([2, 0]), 256, 128).image
    plain = StreetPipeline(predictor, StreetSettings())(image)
    stage = BoundaryStage.open(str(everywhere), "street", TORCH)
    frame = StreetPipeline(predictor, StreetSettings(refine_boundaries=True), stage)(image)
    assert [r.score for r in frame.results] == [r.score for r in plain.results]
    for before, after in zip(plain.results, frame.results):
        assert np.array_equal(after.mask, grown(before.mask, INFERENCE_NMS))
    assert "boundaries" in frame.timings_ms


def test_a_node_without_its_refiner_keeps_running(ros, tmp_path: Path) -> None:
    from refine_perception.ros.instance_segmenter import InstanceSegmenter

    model = write_banded_model(tmp_path / "banded.safetensors")
    args = ["--ros-args", "-p", "threads:=1", "-p", f"model:={model}", "-p", "use_camera_info:=false",
            "-p", "refine_boundaries:=true", "-p", f"boundary_model:={tmp_path / 'none.safetensors'}"]
    node = ros.add(InstanceSegmenter(cli_args=args, use_global_arguments=False))
    assert not node.model_error and node.pipeline is not None and node.pipeline.refiner is None
    values = node.status_summary()[2]
    assert "none.safetensors" in values["boundary_refinement"]


def test_the_heldout_tests_score_refined_masks_next_to_the_unrefined(everywhere: Path, tmp_path: Path) -> None:
    """`refine-train evaluate ... --boundary-model`: the same frames scored twice, the unrefined figures equal to a
    run without the refiner, the refined ones of the grown masks, and the refinement's cost reported."""
    from refine_perception.training.heldout import evaluate_instances_heldout, evaluate_street_heldout

    sticks = write_banded_model(tmp_path / "banded.safetensors")
    common = {"num": 2, "width": 160, "height": 120, "workers": 1, "progress": False}
    plain = evaluate_instances_heldout(sticks, **common)
    picture = tmp_path / "compare.jpg"
    both = evaluate_instances_heldout(sticks, **common, boundary_model=everywhere, boundary_nms=0.3, figure=picture)
    for key in ("mask_AP", "mask_AP50", "boundary_F", "boundary_F_3px", "mIoU"):
        assert both[key] == plain[key]
    assert both["refined"]["mIoU"] != plain["mIoU"] and "refined masks:" in both["table"]
    cost = both["refinement"]
    assert cost["frames"] == 2 and cost["nms"] == 0.3 and cost["patches_per_frame_mean"] > 0
    assert cost["ms_per_frame_median"] > 0 and cost["ms_per_instance_median"] > 0
    drawn = cv2.imread(str(picture))  # two panels of 120 px shown 3x per changed frame, with 4 px gaps
    assert drawn is not None and drawn.shape[1] == 2 * 360 + 4 and drawn.shape[0] % (360 + 4) == 0

    cars = write_car_model(tmp_path / "cars.safetensors")
    common = {"num": 2, "width": 256, "height": 128, "workers": 1, "progress": False}
    plain = evaluate_street_heldout(cars, **common)
    both = evaluate_street_heldout(cars, **common, boundary_model=everywhere)
    assert both["coco_mask_ap"] == plain["coco_mask_ap"] and both["instance_boundary_F"] == plain["instance_boundary_F"]
    assert both["refined"]["instance_boundary_F"] != plain["instance_boundary_F"]
    assert both["refinement"]["frames"] == 2 and "refined instances" in both["table"]


def test_the_comparison_figure_skips_frames_refinement_left_alone() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 20:50] = True
    grown_mask = mask.copy()
    grown_mask[18:42, 18:52] = True
    same = RefinedFrame(image, [mask], [mask], [mask.copy()])
    assert same.most_changed() is None and comparison_figure([same]) is None
    picture = comparison_figure([same, RefinedFrame(image, [grown_mask], [mask], [grown_mask])], window=40, zoom=2)
    assert picture is not None and picture.shape == (40 * 2 + 4, 2 * 40 * 2 + 4, 3)
