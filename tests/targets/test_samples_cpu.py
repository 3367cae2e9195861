"""The sample models through the whole user path: graphopt.compile -> artifact -> graphopt.load -> run.

Compared with PyTorch eager on real inputs (digits for the trained MLP and CNN) within TOLERANCE
(see conftest.py). The full-size ResNet-18 and MobileNetV2 at 224x224 are ``slow``: untuned TVM
code takes a while on them, but they run in CI and must pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphopt
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp
from samples.mobilenet import mobilenet_small, mobilenet_v2
from samples.resnet import resnet18, resnet_small
from samples.transformer import transformer_encoder
from tests.targets.conftest import assert_matches_eager


def _compile_load_compare(model: torch.nn.Module, example: torch.Tensor, check: torch.Tensor, out_dir) -> None:
    graphopt.compile(model, example, target="cpu", out_dir=out_dir)
    loaded = graphopt.load(out_dir)
    assert_matches_eager(model, loaded, check)


def test_mnist_mlp_classifies_digits_like_eager(tmp_path) -> None:
    model = mnist_mlp()
    x, y = load_digits_flat("test")
    batch = x[:64].contiguous()
    _compile_load_compare(model, batch, batch, tmp_path / "mlp")
    predictions = graphopt.load(tmp_path / "mlp")(batch.numpy()).argmax(axis=1)
    eager_predictions = model(batch).argmax(dim=1).numpy()
    np.testing.assert_array_equal(predictions, eager_predictions)
    assert (predictions == y[:64].numpy()).mean() > 0.8


def test_digits_cnn(tmp_path) -> None:
    x, _ = load_digits_28("test")
    batch = x[:16].contiguous()
    _compile_load_compare(digits_cnn(), batch, batch, tmp_path / "cnn")


@pytest.mark.parametrize("factory", [resnet_small, mobilenet_small], ids=["resnet_small", "mobilenet_small"])
def test_small_convnets(factory, tmp_path) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    _compile_load_compare(factory(), x, x, tmp_path / "convnet")


def test_transformer_encoder(tmp_path) -> None:
    model = transformer_encoder(d_model=64, nhead=4, num_layers=2, seq_len=32)
    x = torch.randn(1, 32, 64, generator=torch.Generator().manual_seed(0))
    _compile_load_compare(model, x, x, tmp_path / "transformer")


@pytest.mark.slow
def test_transformer_encoder_default_size(tmp_path) -> None:
    model = transformer_encoder()
    x = torch.randn(1, 128, 256, generator=torch.Generator().manual_seed(0))
    _compile_load_compare(model, x, x, tmp_path / "transformer")


@pytest.mark.slow
@pytest.mark.parametrize("factory", [resnet18, mobilenet_v2], ids=["resnet18", "mobilenet_v2"])
def test_imagenet_size_convnets(factory, tmp_path) -> None:
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    _compile_load_compare(factory(), x, x, tmp_path / "convnet")
