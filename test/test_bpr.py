"""Boundary Patch Refinement's parts: proposals cover every boundary pixel of a mask (both sides of the
contour) at any NMS threshold, NMS keeps the expected boxes on a hand-made contour, crops sample the right
pixels with the mask in {-1, +1}, and pasting back a perfect refiner's patches reproduces the ground truth
inside the band while the rest keeps the coarse mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refine_perception.models.bpr.crop import crop_patches
from refine_perception.models.bpr.network import BoundaryRefiner
from refine_perception.models.bpr.paste import paste_patches
from refine_perception.models.bpr.patches import boundary_scores, box_nms, propose_patches
from refine_perception.models.bpr.refine import PatchSettings, refine_masks, training_patches


def disk(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2 <= radius**2


def test_boundary_scores_mark_both_rings() -> None:
    mask = np.zeros((7, 7), bool)
    mask[2:5, 2:5] = True
    scores = boundary_scores(mask)
    ring = scores > 0
    expected = np.zeros((7, 7), bool)
    expected[1:6, 1:6] = True
    expected[3, 3] = False  # the centre's window is all mask
    assert np.array_equal(ring, expected)  # the 3x3 square's own border and the ring around it
    assert scores[1, 1] == pytest.approx(1 / 4.5) and scores[2, 2] == pytest.approx(4 / 4.5)


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.55, 0.9])
def test_proposals_cover_every_boundary_pixel(threshold: float) -> None:
    mask = disk((200, 300), (100, 140), 70) | disk((200, 300), (60, 240), 25)
    boxes = propose_patches(mask, 64, threshold)
    covered = np.zeros(mask.shape, bool)
    for x0, y0, x1, y1 in boxes:
        assert x1 - x0 == y1 - y0 == 64 and 0 <= x0 and 0 <= y0 and x1 <= 300 and y1 <= 200
        covered[y0:y1, x0:x1] = True
    assert covered[boundary_scores(mask) > 0].all()
    if threshold == 0.25:  # sparser than the inference default, denser than no overlap at all
        assert len(boxes) < len(propose_patches(mask, 64, 0.55)) < len(propose_patches(mask, 64, 0.9))


def test_proposals_of_small_images_and_empty_masks() -> None:
    assert propose_patches(np.zeros((50, 50), bool)).shape == (0, 4)
    mask = np.zeros((20, 40), bool)
    mask[5:15, 10:30] = True
    boxes = propose_patches(mask, 64)
    assert len(boxes) >= 1 and (boxes[:, 2] - boxes[:, 0] == 20).all()  # the patch shrinks to the image


def test_nms_on_a_hand_made_contour() -> None:
    """Boxes of side 10 every 2 px along a row: at IoU 0.5, each kept box suppresses the neighbours within
    3 px (IoU 0.54 at 3 px, 0.43 at 4 px), so every 4th box survives; the scores decide which go first."""
    xs = np.arange(0, 40, 2)
    boxes = np.stack([xs, np.zeros_like(xs), xs + 10, np.full_like(xs, 10)], axis=1)
    scores = np.ones(len(xs))
    assert box_nms(boxes, scores, 0.5).tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    scores[3] = 2.0  # the box at x=6 goes first and pushes its neighbours aside
    kept = box_nms(boxes, scores, 0.5)
    assert kept[0] == 3 and 2 not in kept and 4 not in kept and 0 in kept


def test_crops_sample_pixel_centres() -> None:
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, 4:] = True
    patches = crop_patches(image, mask, np.array([[2, 1, 6, 5], [0, 0, 8, 8]]), 4)
    assert patches.shape == (2, 4, 4, 4)
    assert torch.equal(patches[0, :3], image[:, 1:5, 2:6])  # box and output of one size: the exact pixels
    assert patches[0, 3].tolist() == [[-1, -1, 1, 1]] * 4
    assert torch.allclose(patches[1, 0], torch.nn.functional.avg_pool2d(image[None, :1], 2)[0, 0])
    assert crop_patches(image, mask, np.zeros((0, 4)), 4).shape == (0, 4, 4, 4)


def test_pasting_a_perfect_refiner_restores_the_truth_in_the_band() -> None:
    truth = disk((120, 160), (60, 80), 40)
    coarse = disk((120, 160), (62, 78), 37)  # shifted and shrunk: wrong along the whole contour
    boxes = propose_patches(coarse, 32, 0.55)
    perfect = np.stack([truth[y0:y1, x0:x1].astype(np.float32) for x0, y0, x1, y1 in boxes])
    refined = paste_patches(coarse, boxes, perfect)
    inside = np.zeros(truth.shape, bool)
    for x0, y0, x1, y1 in boxes:
        inside[y0:y1, x0:x1] = True
    assert np.array_equal(refined[inside], truth[inside])
    assert np.array_equal(refined[~inside], coarse[~inside]) and (~inside).any()
    assert (refined != coarse).sum() > 100


def test_refiner_shapes() -> None:
    net = BoundaryRefiner((8, 16, 32)).eval()
    assert net(torch.rand(5, 4, 64, 64)).shape == (5, 1, 64, 64)
    with pytest.raises(ValueError):
        net(torch.rand(1, 4, 30, 30))


def test_refine_masks_in_one_batch_with_a_perfect_refiner() -> None:
    """A refiner that answers with the ground truth of each patch (read back from the patch coordinates)
    turns both coarse masks into the truth along their boundary, in one call for both instances."""
    truth = [disk((96, 128), (48, 40), 25), disk((96, 128), (50, 95), 20)]
    coarse = [disk((96, 128), (46, 42), 22), disk((96, 128), (52, 93), 23)]
    image = np.zeros((96, 128, 3), np.uint8)
    settings = PatchSettings(patch_size=32, input_size=32, nms_threshold=0.55)
    answers = []
    for mask, gt in zip(coarse, truth):
        for x0, y0, x1, y1 in propose_patches(mask, 32, 0.55):
            answers.append(torch.from_numpy(gt[y0:y1, x0:x1].astype(np.float32)) * 40 - 20)
    calls = []

    def run(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return torch.stack(answers)[:, None]

    refined, patches = refine_masks(image, coarse, run, settings)
    assert calls == [patches] == [len(answers)]
    for got, gt, mask in zip(refined, truth, coarse):
        band = boundary_scores(mask) > 0
        assert np.array_equal(got[band], gt[band])
    assert refine_masks(image, [], run, settings) == ([], 0)


def test_training_patches_take_the_best_matching_object() -> None:
    image = np.zeros((96, 128, 3), np.uint8)
    a, b = disk((96, 128), (48, 40), 25), disk((96, 128), (48, 90), 20)
    predicted = disk((96, 128), (47, 41), 24)  # a's, slightly off
    settings = PatchSettings(patch_size=32, input_size=32)
    inputs, targets = training_patches(image, [(26, predicted), (24, b), (26, np.zeros_like(a))], [(26, a), (26, b)],
                                       settings)
    boxes = propose_patches(predicted, 32, 0.25)
    assert inputs.shape == (len(boxes), 4, 32, 32) and targets.shape == (len(boxes), 32, 32)  # only the match
    for (x0, y0, x1, y1), target in zip(boxes, targets):
        assert np.array_equal(target.numpy().astype(bool), a[y0:y1, x0:x1])


def test_model_file_on_the_shared_runtime(tmp_path) -> None:
    from refine_perception.models.bpr.weights import load_bpr, save_bpr
    from refine_perception.runtime import RuntimeConfig, open_network

    torch.manual_seed(0)
    path = tmp_path / "bpr.safetensors"
    save_bpr(path, BoundaryRefiner((4, 8), patch_size=32, input_size=32).eval())
    model, metadata = load_bpr(path)
    assert (model.patch_size, model.input_size, metadata["channels"]) == (32, (32, 32), [4, 8])
    patches = np.random.default_rng(0).uniform(-1, 1, (3, 4, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(patches)).numpy()
    onnx = open_network(path, RuntimeConfig("onnxruntime", "cpu", "fp32", cache_dir=str(tmp_path / "cache")))
    (logits,) = onnx(patches)
    assert np.allclose(logits, expected, atol=1e-4)
    int8 = open_network(path, RuntimeConfig("onnxruntime", "cpu", "int8", cache_dir=str(tmp_path / "cache")))
    assert int8(patches)[0].shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match=r"\(B, 4, 32, 32\)"):
        onnx(patches[:, :3])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        onnx(patches * 3)
