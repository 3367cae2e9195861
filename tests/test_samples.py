"""The sample models and data that examples, tests and benchmarks share."""

from __future__ import annotations

import pytest
import torch

import graphopt
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp
from samples.mobilenet import mobilenet_small
from samples.resnet import resnet_small
from samples.train import accuracy
from samples.transformer import transformer_encoder


def test_digits_split_is_fixed_disjoint_and_normalized():
    x_train, _ = load_digits_28("train")
    x_test, y_test = load_digits_28("test")
    assert x_train.shape == (1438, 1, 28, 28) and x_test.shape == (359, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_test.dtype == torch.int64
    assert set(y_test.tolist()) == set(range(10))
    assert abs(x_train.mean().item()) < 1e-4 and abs(x_train.std().item() - 1) < 1e-3
    # No test image appears in the training split.
    flat_train = {tuple(row.tolist()) for row in x_train.reshape(len(x_train), -1)[:, ::7]}
    assert not any(tuple(row.tolist()) in flat_train for row in x_test.reshape(len(x_test), -1)[:, ::7])
    x_again, _ = load_digits_28("test")
    assert torch.equal(x_again, x_test)
    x_flat, y_flat = load_digits_flat("test")
    assert torch.equal(x_flat, x_test.reshape(359, 784)) and torch.equal(y_flat, y_test)


@pytest.mark.parametrize(
    ("factory", "flatten"),
    [(mnist_mlp, True), (digits_cnn, False)],
)
def test_trained_classifiers_beat_95_percent_on_held_out_digits(factory, flatten):
    x, y = load_digits_flat("test") if flatten else load_digits_28("test")
    model = factory()
    assert not model.training
    assert accuracy(model, x, y) > 0.95


def test_untrained_classifier_is_near_chance():
    x, y = load_digits_flat("test")
    assert accuracy(mnist_mlp(pretrained=False), x, y) < 0.5


@pytest.mark.parametrize(
    ("factory", "shape", "out_shape"),
    [
        (resnet_small, (2, 3, 32, 32), (2, 10)),
        (mobilenet_small, (2, 3, 32, 32), (2, 10)),
        (lambda: transformer_encoder(d_model=32, nhead=4, num_layers=2, seq_len=8), (1, 8, 32), (1, 8, 32)),
    ],
)
def test_random_models_are_seeded_in_eval_mode_and_traceable(factory, shape, out_shape):
    model_a, model_b = factory(), factory()
    assert not model_a.training
    x = torch.randn(*shape)
    with torch.no_grad():
        out = model_a(x)
        assert torch.equal(out, model_b(x))
    assert out.shape == out_shape
    graph = graphopt.capture(model_a, x)
    assert graph.capture_method == "symbolic_trace"
    assert torch.allclose(graph(x), out, rtol=0, atol=0)


def test_sample_models_have_the_documented_structure():
    resnet = resnet_small()
    kinds = {type(m).__name__ for m in resnet.modules()}
    assert {"BasicBlock", "BatchNorm2d", "Conv2d"} <= kinds
    mobilenet = mobilenet_small()
    depthwise = [m for m in mobilenet.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]
    assert depthwise and any(isinstance(m, torch.nn.ReLU6) for m in mobilenet.modules())
    transformer = transformer_encoder(d_model=32, nhead=4, num_layers=1)
    graph = graphopt.capture(transformer, torch.randn(1, 8, 32))
    kinds = {graph.info(n).kind for n in graph.compute_nodes()}
    assert {"linear", "matmul", "softmax", "layer_norm", "gelu"} <= kinds, kinds
