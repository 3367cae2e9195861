"""The insert_dynamic_qdq pass on its own: int8 Linear weights, activations scaled at run time,
no calibration data. Measured on the trained digits MLP and real digits."""

from __future__ import annotations

import torch

from graphopt.capture import capture
from graphopt.numerics import relative_error
from graphopt.pass_manager import optimize
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp


def _int8_tensors(graph) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for t in graph.module.state_dict().values() if t.dtype == torch.int8)


def test_every_linear_gets_int8_weights_and_the_loss_is_small_on_real_digits() -> None:
    model = mnist_mlp().eval()
    x, _ = load_digits_flat(split="test")
    graph = capture(model, x[:8])
    quantized, report = optimize(graph, ["insert_dynamic_qdq"])
    details = report.passes[0].details
    assert len(details["quantized"]) == 3 and details["skipped"] == []
    assert _int8_tensors(quantized) == 3
    assert quantized.stats().param_bytes < graph.stats().param_bytes / 3
    with torch.no_grad():
        expected, got = model(x), quantized.module(x)
    # 8-bit weights (per channel) and activations (per run): a few tenths of a percent per layer.
    assert relative_error(expected, got) < 0.02
    assert (expected.argmax(1) == got.argmax(1)).float().mean() > 0.99


def test_skipped_layers_and_convolutions_stay_float() -> None:
    mlp = capture(mnist_mlp().eval(), torch.randn(2, 784))
    quantized, report = optimize(mlp, ["insert_dynamic_qdq"], options={"insert_dynamic_qdq": {"skip": ("fc3",)}})
    assert report.passes[0].details["skipped"] == ["fc3"] and _int8_tensors(quantized) == 2

    x, _ = load_digits_28(split="test")
    cnn = capture(digits_cnn().eval(), x[:2])
    _, report = optimize(cnn, ["insert_dynamic_qdq"])
    quantized_layers = report.passes[0].details["quantized"]
    assert quantized_layers and not any("conv" in name for name in quantized_layers)
