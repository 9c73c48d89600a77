"""CLRNet priors: row constants, the official initial layout (hand values and a loop port of the
official initialisation), the prior line formula, and its ONNX export."""

from __future__ import annotations

import io
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch

from refine_perception.models.clrnet.priors import (
    IMG_H,
    IMG_W,
    init_prior_params,
    prior_lines,
    prior_ys,
    sample_indices,
)


def test_row_constants() -> None:
    ys = prior_ys()
    assert ys.shape == (72,)
    assert ys[0] == 1.0 and ys[-1] == 0.0
    assert torch.allclose(ys[1] - ys[0], torch.tensor(-1 / 71))
    expected = [(i * 71) // 35 for i in range(36)]  # exact floor of i / 35 * 71
    assert sample_indices().tolist() == expected
    assert sample_indices()[:4].tolist() == [0, 2, 4, 6]


def test_initial_priors_hand_values() -> None:
    params = init_prior_params()
    assert params.shape == (192, 3)
    step = 0.5 / 11
    expected = {
        0: (0.0, 0.0, 0.16),
        1: (0.0, 0.0, 0.32),
        2: (step, 0.0, 0.16),
        23: (0.5, 0.0, 0.32),
        24: (0.0, 1 / 37, 0.2),
        27: (0.0, 1 / 37, 0.8),
        28: (0.0, 2 / 37, 0.2),
        167: (0.0, 36 / 37, 0.8),
        168: (0.0, 1.0, 0.68),
        169: (0.0, 1.0, 0.84),
        191: (0.5, 1.0, 0.84),
    }
    for row, values in expected.items():
        assert params[row].tolist() == pytest.approx(values, abs=1e-7), row


def official_initialisation(num_priors: int) -> list[tuple[float, float, float]]:
    """Prior by prior, as the official `_init_prior_embeddings` loops (our own loop port)."""
    bottom = num_priors * 3 // 4
    left = num_priors // 8
    step = 0.5 / (left // 2 - 1)
    bottom_step = 1 / (bottom // 4 + 1)
    rows = []
    for i in range(num_priors):
        if i < left:
            rows.append(((i // 2) * step, 0.0, 0.16 if i % 2 == 0 else 0.32))
        elif i < left + bottom:
            rows.append((0.0, ((i - left) // 4 + 1) * bottom_step, 0.2 * (i % 4 + 1)))
        else:
            rows.append((((i - left - bottom) // 2) * step, 1.0, 0.68 if i % 2 == 0 else 0.84))
    return rows


@pytest.mark.parametrize("num_priors", [192, 64])
def test_initial_priors_match_loop_port(num_priors: int) -> None:
    expected = torch.tensor(official_initialisation(num_priors), dtype=torch.float32)
    assert torch.equal(init_prior_params(num_priors), expected)


def test_initial_priors_reject_bad_count() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        init_prior_params(100)


def test_prior_line_formula() -> None:
    # 45 degrees from (start_x 0.5, bottom): x grows by one pixel per pixel up the 320-px image
    params = torch.tensor([[0.0, 0.5, 0.25], [0.0, 0.3, 0.5], [0.5, 0.0, 0.16]], dtype=torch.float64)
    xs = prior_lines(params)
    up_px = (1 - prior_ys().double()) * IMG_H
    assert torch.allclose(xs[0] * (IMG_W - 1), 0.5 * (IMG_W - 1) + up_px, atol=0.02)
    # vertical, up to the 1e-5 added to the angle: at most 320 px * 1e-5 off at the top
    assert torch.allclose(xs[1], torch.full((72,), 0.3, dtype=torch.float64), atol=320e-5 / (IMG_W - 1))
    # a left prior crosses its start (x = 0) at half height and goes right above it
    tan = math.tan(0.16 * math.pi + 1e-5)
    row = 36  # y = 1 - 36/71
    assert xs[2, row].item() == pytest.approx((36 / 71 - 0.5) * IMG_H / tan / (IMG_W - 1), rel=1e-5)  # rows are float32
    assert xs[2, 0] < 0 < xs[2, -1]


def test_prior_lines_batched_and_shapes() -> None:
    params = init_prior_params()
    batched = prior_lines(torch.stack([params, params.flip(0)]))
    assert batched.shape == (2, 192, 72)
    assert torch.equal(batched[0], prior_lines(params))
    assert torch.equal(batched[1], prior_lines(params).flip(0))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        prior_lines(torch.zeros(5, 4))


class _Lines(torch.nn.Module):
    def forward(self, params: torch.Tensor) -> torch.Tensor:
        return prior_lines(params)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter the project uses
def test_prior_lines_export_to_onnx() -> None:
    params = init_prior_params()[None] + 0.01
    buffer = io.BytesIO()
    torch.onnx.export(_Lines(), (params,), buffer, dynamo=False, opset_version=17, input_names=["params"])
    session = ort.InferenceSession(buffer.getvalue())
    (exported,) = session.run(None, {"params": params.numpy()})
    np.testing.assert_allclose(exported, prior_lines(params).numpy(), atol=1e-6)
