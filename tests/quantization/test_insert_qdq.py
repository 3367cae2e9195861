"""insert_qdq: the QDQ graph it builds (structure) and how far it may drift from float (numerics)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import graphopt
from graphopt.calibration import choose_qparams


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def _quantized(model: nn.Module, data: torch.Tensor, **options: object) -> graphopt.Graph:
    graph = graphopt.capture(model.eval(), data[:1])
    quantized, _ = graphopt.optimize(graph, "insert_qdq", calibration_data=data, options={"insert_qdq": options})
    return quantized


def _without_scales(text: str) -> str:
    return re.sub(r"\d+\.\d+(e-?\d+)?", "S", text)


def test_linear_layers_read_qdq_activations_and_int8_weights() -> None:
    torch.manual_seed(0)
    graph = _quantized(TwoLayers(), torch.randn(64, 16))
    expected = """\
x = input
x_q = quantize(x, S, 0, -128, 127)
x_dq = dequantize(x_q, S, 0)
fc1_weight_int8 = constant fc1.weight_int8
fc1_weight_scale = constant fc1.weight_scale
fc1_weight = dequantize_per_channel(fc1_weight_int8, fc1_weight_scale, 0)
fc1_bias = constant fc1.bias
fc1 = linear(x_dq, fc1_weight, fc1_bias)
relu = relu(fc1)
relu_q = quantize(relu, S, 0, -128, 127)
relu_dq = dequantize(relu_q, S, 0)
fc2_weight_int8 = constant fc2.weight_int8
fc2_weight_scale = constant fc2.weight_scale
fc2_weight = dequantize_per_channel(fc2_weight_int8, fc2_weight_scale, 0)
fc2_bias = constant fc2.bias
fc2 = linear(relu_dq, fc2_weight, fc2_bias)
return fc2"""
    assert _without_scales(graph.text()) == expected
    assert graph.module.fc1.weight_int8.dtype == torch.int8
    assert graph.module.fc1.weight_scale.shape == (32,)  # one scale per output channel


def test_single_linear_error_is_bounded_by_the_scales() -> None:
    """|y_q - y| <= s_x/2 * sum|w| + s_w/2 * sum|x| + K * s_x/2 * s_w/2, per output channel."""
    torch.manual_seed(1)
    layer = nn.Linear(64, 8)
    data = torch.randn(128, 64)
    graph = _quantized(nn.Sequential(layer), data)
    with torch.no_grad():
        error = (graph(data) - layer(data)).abs()
    scale_x = choose_qparams(float(data.min()), float(data.max()), symmetric=True)[0]
    scale_w = graph.module.get_submodule("0").weight_scale
    bound = (
        scale_x / 2 * layer.weight.abs().sum(1)
        + scale_w / 2 * data.abs().sum(1, keepdim=True)
        + 64 * scale_x / 2 * scale_w / 2
    )
    assert (error <= bound + 1e-6).all()
    assert error.max() > 0  # it did quantize


def test_shared_input_is_quantized_once() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 4), nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)

    graph = _quantized(TwoHeads(), torch.randn(32, 8))
    kinds = [graph.info(n).kind for n in graph.compute_nodes()]
    assert kinds.count("quantize") == 1
    assert graph.node("a").args[0] is graph.node("b").args[0]


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
@pytest.mark.parametrize("activation", ["int8", "uint8"])
def test_cnn_matches_float_within_a_few_steps(method: str, activation: str) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2), nn.Flatten(), nn.Linear(4 * 7 * 7, 5)
    )
    data = torch.randn(32, 3, 16, 16)
    graph = _quantized(model, data, method=method, activation=activation)
    assert [graph.info(n).kind for n in graph.compute_nodes()].count("quantize") == 3
    with torch.no_grad():
        reference = model.eval()(data)
    # three quantized layers, each adding about half a step of its input's range: 5% of the logits
    assert graphopt.numerics.relative_error(reference, graph(data)) < 0.05


def test_skip_list_keeps_layers_float() -> None:
    graph = _quantized(TwoLayers(), torch.randn(16, 16), skip=("fc2",))
    assert isinstance(graph.module.fc2, nn.Linear)
    assert graph.module.fc1.weight_int8.dtype == torch.int8


def test_o3_quantizes_only_with_calibration_data() -> None:
    graph = graphopt.capture(TwoLayers().eval(), torch.randn(1, 16))
    _, without = graphopt.optimize(graph, "O3")
    _, with_data = graphopt.optimize(graph, "O3", calibration_data=torch.randn(8, 16))
    assert "insert_qdq" not in [p.name for p in without.passes]
    assert "insert_qdq" in [p.name for p in with_data.passes]


class ConvPool(nn.Module):
    """A conv whose output goes into the global average pool before a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_the_pass_quantizes_global_pools_unless_told_not_to() -> None:
    torch.manual_seed(0)
    data = torch.randn(16, 3, 8, 8)
    graph = graphopt.capture(ConvPool().eval(), data[:1])
    reports = {}
    for pools in (True, False):
        _, report = graphopt.optimize(
            graph, "insert_qdq", calibration_data=data, options={"insert_qdq": {"global_pools": pools}}
        )
        reports[pools] = report.passes[0].details["global_pools"]
    assert len(reports[True]) == 1 and reports[False] == []
