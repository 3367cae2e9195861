"""graphopt.quantize on the trained digits samples: accuracy, size, dynamic mode, sensitivity."""

from __future__ import annotations

import pytest
import torch

import graphopt
from graphopt.metadata import info
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp


def _accuracy(graph_or_model, x, y) -> float:
    with torch.no_grad():
        return float((graph_or_model(x).argmax(1) == y).float().mean()) * 100


@pytest.mark.parametrize(
    ("factory", "loader", "method"),
    [
        (mnist_mlp, load_digits_flat, "minmax"),
        (digits_cnn, load_digits_28, "percentile"),
        (digits_cnn, load_digits_28, "mse"),
    ],
)
def test_int8_digits_accuracy_within_one_point_and_4x_smaller(factory, loader, method) -> None:
    model = factory()
    x_train, _ = loader("train")
    x_test, y_test = loader("test")
    graph = graphopt.capture(model, x_test[:1])
    quantized, report = graphopt.quantize(graph, x_train[:200], method=method)
    assert _accuracy(model, x_test, y_test) - _accuracy(quantized, x_test, y_test) <= 1.0
    assert report.size_ratio > 3.7  # int8 weights + float32 per-channel scales and biases
    assert quantized.stats().param_bytes == report.quantized_bytes


def _batch_norms(graph) -> int:
    return sum(info(node).kind == "batch_norm" for node in graph.module.graph.nodes)


def test_batch_norm_is_folded_before_quantizing() -> None:
    """The digits CNN captured as is (conv -> BN -> ReLU): its int8 convs carry the folded weights."""
    x_train, _ = load_digits_28("train")
    x_test, _ = load_digits_28("test")
    graph = graphopt.capture(digits_cnn(), x_test[:1])
    quantized, report = graphopt.quantize(graph, x_train[:64])
    assert _batch_norms(graph) == 2  # the graph given is untouched
    assert _batch_norms(quantized) == 0
    assert report.float_bytes == graph.stats().param_bytes  # sizes compare against the graph given


def test_dynamic_quantization_without_data_quantizes_linears() -> None:
    x, y = load_digits_flat("test")
    graph = graphopt.capture(mnist_mlp(), x[:1])
    quantized, report = graphopt.quantize(graph)
    assert report.mode == "dynamic" and report.quantized == ["fc1", "fc2", "fc3"]
    assert [quantized.info(n).kind for n in quantized.compute_nodes()].count("fake_quantize_dynamic") == 3
    assert _accuracy(graph, x, y) - _accuracy(quantized, x, y) <= 1.0


def test_dynamic_quantization_of_an_o2_graph_quantizes_its_pretransposed_matmuls() -> None:
    x, y = load_digits_flat("test")
    optimized, _ = graphopt.optimize(graphopt.capture(mnist_mlp(), x[:1]), "O2")
    quantized, report = graphopt.quantize(optimized)
    assert report.mode == "dynamic" and len(report.quantized) == 3
    assert report.quantized_bytes < report.float_bytes / 3.9
    assert _accuracy(optimized, x, y) - _accuracy(quantized, x, y) <= 1.0


def test_o2_after_quantization_keeps_the_int8_weights() -> None:
    x, _ = load_digits_flat("test")
    quantized, _ = graphopt.quantize(graphopt.capture(mnist_mlp(), x[:1]), x[:64])
    again, _ = graphopt.optimize(quantized, "O2")
    assert again.stats().param_bytes == quantized.stats().param_bytes
    assert torch.equal(again(x[:16]), quantized(x[:16]))


def test_skip_by_type_name_and_pattern() -> None:
    x, _ = load_digits_28("train")
    graph = graphopt.capture(digits_cnn(), x[:1])
    _, by_type = graphopt.quantize(graph, x[:64], skip=["Conv2d"])
    _, by_pattern = graphopt.quantize(graph, x[:64], skip=["conv*"])
    _, by_class = graphopt.quantize(graph, x[:64], skip=[torch.nn.Linear])
    assert by_type.quantized == by_pattern.quantized == ["fc"]
    assert by_class.quantized == ["conv1", "conv2"]


def test_sensitivity_ranks_layers_and_budget_keeps_worst_in_float() -> None:
    x, y = load_digits_flat("train")
    graph = graphopt.capture(mnist_mlp(), x[:1])
    _, report = graphopt.quantize(graph, x[:128], labels=y[:128], sensitivity=True, per_channel=False)
    ranking = report.sensitivity
    assert sorted(layer.name for layer in ranking) == ["fc1", "fc2", "fc3"]
    assert all(layer.output_error > 0 for layer in ranking)
    assert ranking == sorted(ranking, key=lambda layer: (-layer.accuracy_drop, -layer.output_error))
    _, within = graphopt.quantize(graph, x[:128], labels=y[:128], max_accuracy_drop=0.5, per_channel=False)
    assert within.accuracy_drop <= 0.5
    _, budgeted = graphopt.quantize(graph, x[:128], labels=y[:128], max_accuracy_drop=-100.0)
    assert budgeted.kept_float == [layer.name for layer in budgeted.sensitivity]  # impossible budget: all float
    assert budgeted.quantized == [] and budgeted.output_error == 0.0


def test_budget_needs_labels() -> None:
    x, _ = load_digits_flat("train")
    graph = graphopt.capture(mnist_mlp(), x[:1])
    with pytest.raises(graphopt.InputError, match="needs labels"):
        graphopt.quantize(graph, x[:32], max_accuracy_drop=0.5)


def test_o2_graph_with_pretransposed_weights_is_quantized_and_skippable_by_layer_name() -> None:
    x, y = load_digits_flat("test")
    graph, _ = graphopt.optimize(graphopt.capture(mnist_mlp(), x[:1]), "O2")
    quantized, report = graphopt.quantize(graph, x[:128], skip=["fc3"])
    assert [quantized.info(n).kind for n in quantized.compute_nodes()].count("dequantize_per_channel") == 2
    assert len(report.quantized) == 2 and len(report.skipped) == 1
    assert _accuracy(graph, x, y) - _accuracy(quantized, x, y) <= 1.0


def test_quantize_options_are_checked_before_any_work() -> None:
    from graphopt import QuantizeOptions
    from graphopt.errors import InputError
    from graphopt.quantize import quantize_options

    with pytest.raises(InputError, match="unknown calibration method 'mse2'"):
        QuantizeOptions(method="mse2")
    with pytest.raises(InputError, match="did you mean 'per_channel'"):
        quantize_options(per_chanel=False)
    assert quantize_options(QuantizeOptions(method="mse"), skip=["fc3"]) == QuantizeOptions(method="mse", skip=("fc3",))


def test_sensitivity_names_layers_by_their_module_after_o2() -> None:
    x, y = load_digits_flat("train")
    graph, _ = graphopt.optimize(graphopt.capture(mnist_mlp(), x[:1]), "O2")  # Linear -> matmul_N nodes
    _, report = graphopt.quantize(graph, x[:64], labels=y[:64], sensitivity=True)
    assert sorted(layer.module for layer in report.sensitivity) == ["fc1", "fc2", "fc3"]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(report.table())
    assert "fc3 (node matmul_2)" in console.export_text()
