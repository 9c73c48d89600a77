"""The refine-perception command line, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

CLI = [str(Path(sys.prefix) / "lib" / "refine_perception" / "refine-perception")]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [[], ["launch"], ["demo"]])
def test_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0 and "usage: refine-perception" in result.stdout


def test_launch_lists_graphs_and_arguments():
    listing = run("launch")
    assert listing.returncode == 0 and listing.stdout.startswith("camera")
    args = run("launch", "camera", "--show-args")
    assert "rate_hz:=" in args.stdout and "camera_source_params_file:=" in args.stdout
    bad = run("launch", "camera", "rate_hz=5")
    assert bad.returncode == 2 and "expected name:=value" in bad.stderr
    unknown = run("launch", "camera", "frobnicate:=1")
    assert unknown.returncode == 2 and "has no argument 'frobnicate'" in unknown.stderr


def test_demo_scores_the_synthetic_drive_and_writes_a_strip(tmp_path):
    strip = tmp_path / "strip.png"
    result = run("demo", "--frames", "10", "--rate", "5", "--strip", str(strip), "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["camera_source"]["processed"] == 10
    detector = figures["lane_detector"]
    assert detector["received"] == detector["processed"] + detector["dropped"]
    assert detector["processed"] >= 8 and not detector["model_error"]
    scorer = figures["lane_scorer"]
    assert scorer["frames_scored"] == detector["lane_arrays_published"]
    assert scorer["F1@50"] > 0.5, scorer  # a broken pipeline (colours, crop, scaling) scores near 0
    assert cv2.imread(str(strip)).shape[1] > 480


def test_demo_on_a_folder_runs_without_scoring(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((120, 320, 3), 40 * i, np.uint8))
    result = run("demo", "--frames", "6", "--rate", "10", "--source", str(tmp_path), "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["camera_source"]["processed"] == 6 and "lane_scorer" not in figures
    detector = figures["lane_detector"]
    assert detector["received"] == detector["processed"] + detector["dropped"] and detector["processed"] >= 3


FIXTURES = Path(__file__).parent / "fixtures" / "lanes"


def test_eval_culane_scores_ground_truth_against_itself(tmp_path):
    root = FIXTURES / "culane"
    out = tmp_path / "culane.json"
    result = run("eval", "culane", "--gt", str(root), "--pred", str(root), "--json", "--out", str(out),
                 "--workers", "1")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures == json.loads(out.read_text())
    assert figures["mode"] == "official"
    everything = figures["categories"]["all"]
    assert everything["images"] == 3 and everything["mF1"] == 1.0
    assert everything["per_threshold"][0] == {
        "iou": 0.5, "TP": 6, "FP": 0, "FN": 0, "precision": 1.0, "recall": 1.0, "F1": 1.0
    }


def test_eval_culane_empty_predictions_count_as_misses(tmp_path):
    result = run("eval", "culane", "--gt", str(FIXTURES / "culane"), "--pred", str(tmp_path), "--json",
                 "--missing-as-empty")
    everything = json.loads(result.stdout)["categories"]["all"]
    assert everything["per_threshold"][0]["TP"] == 0 and everything["per_threshold"][0]["FN"] == 6


def test_eval_culane_missing_prediction_folder_is_an_error(tmp_path):
    for pred in (tmp_path / "nonexistent", FIXTURES / "culane" / "list" / "test.txt"):
        result = run("eval", "culane", "--gt", str(FIXTURES / "culane"), "--pred", str(pred), "--json")
        assert result.returncode == 2 and not result.stdout, result.stdout
        assert f"refine-perception eval: prediction folder {pred} " in result.stderr, result.stderr


def test_eval_culane_missing_prediction_files_are_counted(tmp_path):
    import shutil

    image = "driver_37_30frame/05181432_0203.MP4/00090.lines.txt"
    (tmp_path / image).parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "culane" / image, tmp_path / image)
    common = ["eval", "culane", "--gt", str(FIXTURES / "culane"), "--pred", str(tmp_path), "--workers", "1"]
    refused = run(*common)
    assert refused.returncode == 2 and not refused.stdout
    assert f"2 of 3 prediction files are missing under {tmp_path}" in refused.stderr, refused.stderr
    assert "driver_100_30frame/05251517_0433.MP4/00000.lines.txt" in refused.stderr
    assert "--missing-as-empty" in refused.stderr
    scored = run(*common, "--missing-as-empty", "--json")
    assert scored.returncode == 0, scored.stderr
    figures = json.loads(scored.stdout)
    assert figures["missing_predictions"] == 2
    assert figures["categories"]["all"]["per_threshold"][0]["FN"] > 0
    table = run(*common, "--missing-as-empty")
    assert "2 of 3 images have no prediction file (scored as no lanes)" in table.stdout
    complete = run("eval", "culane", "--gt", str(FIXTURES / "culane"), "--pred", str(FIXTURES / "culane"), "--json")
    assert json.loads(complete.stdout)["missing_predictions"] == 0


def test_eval_tusimple_and_a_clear_error_for_broken_files():
    result = run("eval", "tusimple", "--gt", str(FIXTURES / "tusimple" / "label_data.json"),
                 "--pred", str(FIXTURES / "tusimple" / "predictions.json"), "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) >= {"Accuracy", "FP", "FN", "F1"}
    broken = run("eval", "tusimple", "--gt", str(FIXTURES / "tusimple" / "broken_label.json"),
                 "--pred", str(FIXTURES / "tusimple" / "predictions.json"))
    assert broken.returncode == 2 and "broken_label.json:" in broken.stderr


def test_eval_tusimple_accepts_the_official_submission_form(tmp_path):
    # {raw_file, lanes, run_time} per line, as TuSimple's evaluator and CLRNet write it: rows from the GT.
    gt = FIXTURES / "tusimple" / "label_data.json"
    docs = [json.loads(line) for line in (FIXTURES / "tusimple" / "predictions.json").read_text().splitlines()]
    reference = run("eval", "tusimple", "--gt", str(gt), "--pred", str(FIXTURES / "tusimple" / "predictions.json"),
                    "--json")
    submission = tmp_path / "submission.json"
    submission.write_text("".join(json.dumps({k: v for k, v in d.items() if k != "h_samples"}) + "\n" for d in docs))
    result = run("eval", "tusimple", "--gt", str(gt), "--pred", str(submission), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(reference.stdout)
    docs[1]["h_samples"] = [y + 10 for y in docs[1]["h_samples"]]
    moved = tmp_path / "moved.json"
    moved.write_text("".join(json.dumps(d) + "\n" for d in docs))
    result = run("eval", "tusimple", "--gt", str(gt), "--pred", str(moved))
    assert result.returncode == 2 and "h_samples (250..720, 48 rows) differ from the ground truth's" in result.stderr


def test_data_convert_round_trip_tusimple_culane(tmp_path):
    from refine_perception.data.formats.tusimple import H_SAMPLES, read_tusimple

    source = FIXTURES / "tusimple" / "label_data.json"
    culane = tmp_path / "culane"
    assert run("data", "convert", "tusimple-to-culane", "--src", str(source), "--out", str(culane)).returncode == 0
    back = tmp_path / "back.json"
    result = run("data", "convert", "culane-to-tusimple", "--src", str(culane), "--out", str(back))
    assert result.returncode == 0, result.stderr
    original = {r.raw_file: r for r in read_tusimple(source)}
    converted = read_tusimple(back)
    assert [r.raw_file for r in converted] == list(original)
    standard = [r for r in converted if list(original[r.raw_file].h_samples) == list(H_SAMPLES)]
    assert standard, "the fixture has records on TuSimple's standard rows"
    for record in standard:
        np.testing.assert_allclose(record.xs, original[record.raw_file].xs)


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """Two generated street scenes and perfect predictions in each official format."""
    import shutil

    from refine_perception.data.formats.cityscapes import find_samples, read_annotation
    from refine_perception.data.formats.coco import load_coco
    from refine_perception.metrics.cityscapes_ap import write_cityscapes_predictions
    from refine_perception.metrics.instances import PredInstance

    root = tmp_path_factory.mktemp("street")
    generated = run("data", "generate", "street", "--out", str(root), "--num", "2", "--split", "val",
                    "--workers", "1", "--json")
    assert generated.returncode == 0, generated.stderr
    assert json.loads(generated.stdout)["images"] == 2
    pred = root / "pred"
    pred.mkdir()
    for sample in find_samples(root, "val"):
        stem = "_".join(sample.label_ids.name.split("_")[:3])
        shutil.copy(sample.label_ids, pred / f"{stem}_pred_labelIds.png")
        instances = read_annotation(sample.label_ids, sample.instance_ids).instances()
        write_cityscapes_predictions(pred / f"{stem}_pred.txt", [PredInstance(i.class_id, i.mask, 0.9) for i in instances])
    dataset = load_coco(root / "annotations" / "instances_val.json")
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                "score": 0.9} for a in dataset.annotations]
    (root / "results.json").write_text(json.dumps(results))
    return root


def test_eval_segmentation_of_perfect_predictions(street):
    ap = json.loads(run("eval", "cityscapes", "--gt", str(street), "--pred", str(street / "pred"), "--json").stdout)
    assert ap["summary"]["AP"] == 1.0 and ap["summary"]["AP50"] == 1.0
    semantic = run("eval", "semantic", "--gt", str(street), "--pred", str(street / "pred"), "--boundary-px", "2",
                   "--json")
    figures = json.loads(semantic.stdout)
    assert figures["mIoU"] == 1.0 and figures["IoU"]["road"] == 1.0 and figures["boundary_f"]["mean"] == 1.0
    coco = run("eval", "coco", "--gt", str(street / "annotations" / "instances_val.json"),
               "--pred", str(street / "results.json"), "--json")
    assert json.loads(coco.stdout)["summary"]["AP"] == 1.0


def test_eval_segmentation_errors_name_the_missing_file(street, tmp_path):
    result = run("eval", "cityscapes", "--gt", str(street), "--pred", str(tmp_path))
    assert result.returncode == 2 and "0 prediction files for synthetic_000000_000000" in result.stderr


def test_data_generate_lanes_and_preview(tmp_path):
    result = run("data", "generate", "lanes", "--out", str(tmp_path / "lanes"), "--num", "2", "--split", "test",
                 "--workers", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 2
    root = tmp_path / "lanes" / "culane"
    assert len((root / "list" / "test.txt").read_text().splitlines()) == 2
    assert len(list((root / "list" / "test_split").glob("test*_*.txt"))) == 9
    assert (tmp_path / "lanes" / "tusimple").is_dir()
    for kind in ("lanes", "sticks"):
        out = tmp_path / f"{kind}.png"
        assert run("data", "preview", kind, "--count", "2", "--out", str(out)).returncode == 0
        assert cv2.imread(str(out)) is not None


def test_engines_prepares_the_onnx_cache_and_explains_missing_tensorrt(tmp_path):
    import torch

    from refine_perception.models.clrnet.model import CLRNet
    from refine_perception.models.clrnet.weights import save_lane_model

    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_lane_model(weights, CLRNet("resnet18", 5, (64, 160), num_priors=32, sample_points=8).eval(), "resnet18", {})
    from refine_perception.models.spatial_embeddings.erfnet import SpatialEmbeddingNet
    from refine_perception.models.spatial_embeddings.weights import save_spatial_embeddings

    sticks = tmp_path / "sticks.safetensors"
    save_spatial_embeddings(sticks, SpatialEmbeddingNet(width=0.5, input_size=(48, 64)).eval())
    cache = tmp_path / "cache"
    first = run("engines", "--model", str(weights), "--model", str(sticks), "--cache-dir", str(cache), "--select",
                "--precision", "fp32", "--threads", "1")
    assert first.returncode == 0, first.stderr
    exported = sorted(cache.glob("*.onnx"))
    # per model its ONNX export and int8 version(s): this CPU's weights, and the 8-bit file OpenVINO reads
    assert {p.name.split("-")[0] for p in exported} == {"clrnet", "spatial"}
    assert all(str(path) in first.stdout for path in exported)
    assert sum("-int8" in p.name for p in exported) >= 2
    assert first.stdout.count("precision fp32 threads 1 -> ") == 2 and "medians" in first.stdout
    stamps = [path.stat().st_mtime_ns for path in exported]
    assert run("engines", "--model", str(weights), "--model", str(sticks), "--cache-dir", str(cache)).returncode == 0
    assert [path.stat().st_mtime_ns for path in exported] == stamps  # reused, not built again
    trt = run("engines", "--model", str(weights), "--cache-dir", str(cache), "--tensorrt")
    assert trt.returncode == 2 and "TensorRT is not installed" in trt.stderr
    missing = run("engines", "--model", str(tmp_path / "nope.safetensors"), "--cache-dir", str(cache))
    assert missing.returncode == 2 and "not found" in missing.stderr
