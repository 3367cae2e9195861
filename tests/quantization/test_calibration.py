"""Calibration data checks and the range each calibration method picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.calibration import Observer, choose_qparams, load_npz, prepare

EXAMPLE = (torch.zeros(1, 4),)


def test_accepts_tensor_arrays_loaders_and_npz(tmp_path) -> None:
    data = torch.randn(100, 4)
    assert prepare(data, EXAMPLE).samples == 100
    assert prepare(data.numpy(), EXAMPLE).samples == 100
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data, torch.arange(100)), batch_size=30)
    from_loader = prepare(loader, EXAMPLE)
    assert from_loader.samples == 100 and from_loader.labels.tolist() == list(range(100))
    np.savez(tmp_path / "calib.npz", x=data.numpy())
    assert prepare(tmp_path / "calib.npz", EXAMPLE).samples == 100
    assert load_npz(tmp_path / "calib.npz").shape == (100, 4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "needs calibration data"),
        (torch.zeros(0, 4), "empty"),
        ([], "empty"),
        (torch.zeros(8, 5), "has shape 8x5, the model expects Nx4"),
        (torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), "NaN"),
        ([torch.ones(2, 4), torch.full((2, 4), float("inf"))], "batch 1, input 0 contains Inf"),
    ],
)
def test_bad_calibration_data_is_one_clear_error(data, message) -> None:
    with pytest.raises(graphopt.InputError, match=message):
        prepare(data, EXAMPLE)


def test_missing_npz_is_an_input_error(tmp_path) -> None:
    with pytest.raises(graphopt.InputError, match="not found"):
        prepare(tmp_path / "nope.npz", EXAMPLE)


def test_quantize_reports_bad_data_before_touching_the_graph() -> None:
    graph = graphopt.capture(nn.Linear(4, 2).eval(), torch.zeros(1, 4))
    with pytest.raises(graphopt.InputError, match="expects Nx4"):
        graphopt.quantize(graph, torch.zeros(3, 3))


def test_percentile_and_mse_clip_outliers_that_minmax_keeps() -> None:
    torch.manual_seed(0)
    values = torch.cat([torch.randn(50_000), torch.tensor([1000.0])])
    observer = Observer()
    observer(values)
    assert observer.value_range("minmax") == (pytest.approx(float(values.min())), 1000.0)
    assert observer.value_range("percentile", 99.9)[1] < 10
    assert observer.value_range("mse")[1] < 1000.0


def test_qparams_symmetric_int8_and_affine_uint8() -> None:
    assert choose_qparams(-1.0, 2.54, symmetric=True) == (pytest.approx(0.02), 0, -128, 127)
    scale, zero_point, qmin, qmax = choose_qparams(-1.0, 1.55, symmetric=False)
    assert (qmin, qmax) == (0, 255) and scale == pytest.approx(0.01) and zero_point == 100
    assert choose_qparams(0.5, 2.0, symmetric=False)[1] == 0  # zero stays representable
