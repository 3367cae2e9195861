"""ONNX files through the whole compile path: torch.onnx.export of a sample -> graphopt.compile("x.onnx")
-> CPU artifact, compared with ONNX Runtime running the same file on real inputs."""

from __future__ import annotations

import warnings

import pytest
import torch

import graphopt
from graphopt.numerics import relative_error
from graphopt.onnx_io import run_onnxruntime
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp
from samples.transformer import transformer_encoder
from tests.targets.conftest import TOLERANCE


def _samples():
    return {
        "mnist_mlp": (mnist_mlp, lambda: load_digits_flat()[0][:16].contiguous()),
        "digits_cnn": (digits_cnn, lambda: load_digits_28()[0][:16].contiguous()),
        "transformer": (
            lambda: transformer_encoder(d_model=32, nhead=4, num_layers=2),
            lambda: torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(0)),
        ),
    }


@pytest.mark.parametrize("name", ["mnist_mlp", "digits_cnn", "transformer"])
def test_onnx_file_compiles_for_cpu_and_matches_onnxruntime(tmp_path, name):
    factory, data = _samples()[name]
    model, x = factory(), data()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamo=False)
    compiled = graphopt.compile(str(path), None, target="cpu", out_dir=tmp_path / "artifact")
    artifact = graphopt.load(tmp_path / "artifact")
    reference = run_onnxruntime(path, x)[0]
    assert relative_error(reference, artifact(x.numpy())) < TOLERANCE
    assert relative_error(reference, compiled(x.numpy())) < TOLERANCE
