"""Capture: a model becomes a Graph whose nodes know their shapes, dtypes, bytes, FLOPs and source line."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import CaptureError, InputError
from samples.cnn import DigitsCNN, digits_cnn
from samples.mnist_mlp import mnist_mlp


def line_of(function, text: str) -> int:
    """The line number of the first line in ``function``'s source containing ``text``."""
    lines, start = inspect.getsourcelines(function)
    return start + next(i for i, line in enumerate(lines) if text in line)


class ShapeBranch(nn.Module):
    """Python control flow on an input shape: symbolic_trace cannot follow it, torch.export can."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[0] > 1:
            return self.fc(x) * 2
        return self.fc(x)


class ValueBranch(nn.Module):
    """Control flow on tensor values: neither symbolic_trace nor torch.export can capture it."""

    def forward(self, x):
        if x.sum() > 0:
            return x + 1
        return x - 1


def test_symbolic_trace_keeps_modules_and_matches_eager():
    model = mnist_mlp()
    x = torch.randn(3, 784)
    graph = graphopt.capture(model, x)
    assert graph.capture_method == "symbolic_trace" and graph.notes == []
    assert [graph.info(n).kind for n in graph.compute_nodes()] == ["linear", "relu", "linear", "relu", "linear"]
    with torch.no_grad():
        assert torch.equal(graph(x), model(x))


def test_shape_dependent_control_flow_falls_back_to_export_with_a_note():
    model = ShapeBranch().eval()
    x = torch.randn(2, 4)
    graph = graphopt.capture(model, x)
    assert graph.capture_method == "export"
    assert len(graph.notes) == 1 and "symbolic_trace failed" in graph.notes[0] and "torch.export" in graph.notes[0]
    with torch.no_grad():
        assert torch.equal(graph(x), model(x))
    assert "linear" in [graph.info(n).kind for n in graph.compute_nodes()]


def test_when_both_methods_fail_the_error_names_the_users_line(capfd):
    with pytest.raises(CaptureError) as caught:
        graphopt.capture(ValueBranch(), torch.randn(2, 4))
    message = str(caught.value)
    assert "symbolic_trace failed" in message and "torch.export failed" in message
    assert caught.value.source.startswith(f"{__file__}:{line_of(ValueBranch.forward, 'if x.sum() > 0')}")
    assert "\n" not in message
    # torch.export prints the partial graph to stderr when it fails; capture holds that back.
    assert "def forward" not in capfd.readouterr().err


def test_forcing_symbolic_trace_does_not_fall_back():
    with pytest.raises(CaptureError, match="symbolic_trace failed") as caught:
        graphopt.capture(ShapeBranch(), torch.randn(2, 4), method="symbolic_trace")
    assert caught.value.source.startswith(f"{__file__}:{line_of(ShapeBranch.forward, 'if x.shape[0] > 1')}")


def test_wrong_input_shape_names_the_node_and_the_model_line():
    with pytest.raises(InputError) as caught:
        graphopt.capture(mnist_mlp(), torch.randn(1, 100))
    error = caught.value
    assert error.node == "fc1"
    assert "(1, 100) float32" in str(error) and "1x100 and 784x256" in str(error)
    import samples.mnist_mlp as module

    assert error.source == f"{module.__file__}:{line_of(module.MnistMLP.forward, 'self.fc1(x)')}"


def test_wrong_input_shape_on_the_export_path_is_an_input_error_too():
    with pytest.raises(InputError, match=r"\(2, 5\) float32") as caught:
        graphopt.capture(ShapeBranch().eval(), torch.randn(2, 5))
    assert caught.value.source.startswith(f"{__file__}:{line_of(ShapeBranch.forward, 'self.fc(x) * 2')}")


def test_wrong_input_dtype_is_an_input_error():
    with pytest.raises(InputError, match="int64"):
        graphopt.capture(mnist_mlp(), torch.zeros(1, 784, dtype=torch.int64))


def test_inputs_may_be_numpy_arrays_and_non_tensors_are_rejected():
    graph = graphopt.capture(mnist_mlp(), torch.randn(1, 784).numpy())
    assert isinstance(graph.example_inputs[0], torch.Tensor)
    with pytest.raises(InputError, match="example input 0 is a str"):
        graphopt.capture(mnist_mlp(), ["not a tensor"])
    with pytest.raises(InputError, match=r"expected a torch\.nn\.Module"):
        graphopt.capture(lambda x: x, torch.randn(1))
    with pytest.raises(InputError, match="unknown capture method"):
        graphopt.capture(mnist_mlp(), torch.randn(1, 784), method="jit")


def test_capture_and_optimize_never_touch_the_users_model():
    def snapshot(model):
        return {k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()]

    def unchanged(model, before):
        state, modes = before
        after = model.state_dict()
        return all(torch.equal(state[k], after[k]) for k in state) and [m.training for m in model.modules()] == modes

    x = torch.randn(4, 1, 28, 28)
    training = DigitsCNN().train()  # BatchNorm would update its running stats if run in place
    before = snapshot(training)
    graphopt.capture(training, x)
    graphopt.capture(training, x, method="export")
    assert unchanged(training, before)

    trained = digits_cnn()  # eval mode: O2 folds BatchNorm into the conv weights, on its own copy
    before = snapshot(trained)
    graph = graphopt.capture(trained, x)
    optimized, _ = graphopt.optimize(graph, "O2")
    with torch.no_grad():
        optimized(x)
    assert unchanged(trained, before)


def test_exported_program_is_accepted():
    model = ShapeBranch().eval()
    x = torch.randn(2, 4)
    graph = graphopt.capture(torch.export.export(model, (x,)), x)
    assert graph.capture_method == "export"
    with torch.no_grad():
        assert torch.equal(graph(x), model(x))


# -- metadata ---------------------------------------------------------------------------------------


def test_linear_metadata_matches_hand_computed_values():
    graph = graphopt.capture(nn.Sequential(nn.Linear(784, 256)).eval(), torch.randn(3, 784))
    (node,) = graph.compute_nodes()
    facts = graph.info(node)
    assert facts.kind == "linear"
    assert facts.shapes == [(3, 256)] and facts.dtypes == ["float32"]
    assert facts.param_bytes == (784 * 256 + 256) * 4
    assert facts.flops == 2 * 3 * 256 * 784  # one multiply-add = 2 FLOPs per weight per row
    assert facts.module_path == "0"
    assert graph.stats() == graphopt.GraphStats(
        nodes=1, params=784 * 256 + 256, param_bytes=facts.param_bytes, flops=facts.flops
    )


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
@pytest.mark.parametrize(("groups", "out_channels"), [(1, 8), (4, 4)])
def test_conv2d_metadata_matches_hand_computed_values(method, groups, out_channels):
    model = nn.Sequential(nn.Conv2d(4, out_channels, 3, stride=2, padding=1, groups=groups)).eval()
    graph = graphopt.capture(model, torch.randn(2, 4, 16, 16), method=method)
    conv = [n for n in graph.compute_nodes() if graph.info(n).kind == "conv2d"]
    assert len(conv) == 1
    facts = graph.info(conv[0])
    assert facts.shapes == [(2, out_channels, 8, 8)]
    per_output = (4 // groups) * 3 * 3
    assert facts.flops == 2 * (2 * out_channels * 8 * 8) * per_output
    weight_bytes = (out_channels * per_output + out_channels) * 4
    if method == "symbolic_trace":
        assert facts.param_bytes == weight_bytes  # the module node owns its weights
    assert graph.stats().param_bytes == weight_bytes


def test_nodes_know_their_source_line_and_module_path():
    import samples.cnn as module

    graph = graphopt.capture(DigitsCNN().eval(), torch.randn(1, 1, 28, 28))
    conv2 = graph.node("conv2")
    assert graph.info(conv2).source == f"{module.__file__}:{line_of(module.DigitsCNN.forward, 'self.conv2(x)')}"
    assert graph.info(conv2).module_path == "conv2"
    assert graph.info(graph.node("fc")).shape == (1, 10)
    assert graph.info(graph.input_nodes()[0]).dtypes == ["float32"]
