"""fuse_conv_bn folds eval BatchNorm into the Conv/Linear before it, in both graph spellings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from graphopt.errors import PassError
from tests.passes.models import (
    FLOAT_TOLERANCE,
    ConvBnRelu,
    assert_matches_eager,
    captured,
    kinds,
    randomized_bn,
    run_pass,
)


@pytest.mark.parametrize("bias", [False, True])
def test_conv_bn_becomes_one_conv_with_bias(bias: bool) -> None:
    model = ConvBnRelu(bias=bias).eval()
    graph, record = run_pass(captured(model, 2, 3, 8, 8), "fuse_conv_bn", tolerance=FLOAT_TOLERANCE)
    assert graph.text() == "x = input\nconv = conv2d(x)\nrelu = relu(conv, inplace=False)\nreturn relu"
    assert record.details["folded"] == ["bn -> conv"]
    assert graph.module.conv.bias is not None
    assert not hasattr(graph.module, "bn")  # its statistics went with it
    assert_matches_eager(model, graph, 4, 3, 8, 8, tolerance=FLOAT_TOLERANCE)


def test_export_spelling_is_folded_too() -> None:
    model = ConvBnRelu().eval()
    graph, record = run_pass(captured(model, 2, 3, 8, 8, method="export"), "fuse_conv_bn", tolerance=FLOAT_TOLERANCE)
    assert kinds(graph) == ["conv2d", "relu"]
    assert record.details["folded"] == ["batch_norm -> conv2d"]
    assert_matches_eager(model, graph, 4, 3, 8, 8, tolerance=FLOAT_TOLERANCE)


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_linear_then_batchnorm1d(method: str) -> None:
    model = nn.Sequential(nn.Linear(6, 5), randomized_bn(5, dims=1), nn.ReLU()).eval()
    graph, _ = run_pass(captured(model, 3, 6, method=method), "fuse_conv_bn", tolerance=FLOAT_TOLERANCE)
    assert kinds(graph) == ["linear", "relu"]
    assert_matches_eager(model, graph, 7, 6, tolerance=FLOAT_TOLERANCE)


def test_conv_with_two_users_keeps_its_weights_and_bn_becomes_affine() -> None:
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), randomized_bn(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # y is needed un-normalized too

    model = Branch().eval()
    graph, record = run_pass(captured(model, 1, 3, 4, 4), "fuse_conv_bn", tolerance=FLOAT_TOLERANCE)
    assert record.details["folded"] == [] and record.details["to_affine"] == ["bn"]
    assert kinds(graph) == ["conv2d", "mul", "add", "add"]
    assert torch.equal(graph.module.conv.weight, model.conv.weight)
    assert_matches_eager(model, graph, 2, 3, 4, 4, tolerance=FLOAT_TOLERANCE)


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_lone_batchnorm_becomes_a_constant_scale_and_shift(method: str) -> None:
    model = nn.Sequential(randomized_bn(3), nn.ReLU()).eval()
    graph, record = run_pass(captured(model, 2, 3, 5, 5, method=method), "fuse_conv_bn", tolerance=FLOAT_TOLERANCE)
    assert kinds(graph) == ["mul", "add", "relu"]
    assert len(record.details["to_affine"]) == 1 and record.details["folded"] == []
    scale = next(t for name, t in graph.module.named_parameters() if name.endswith("scale"))
    assert scale.shape == (3, 1, 1)
    assert_matches_eager(model, graph, 4, 3, 5, 5, tolerance=FLOAT_TOLERANCE)


def test_training_model_is_refused_with_a_clear_message() -> None:
    model = ConvBnRelu().train()
    graph = captured(model, 2, 3, 8, 8).copy()
    graph.module.train()
    with pytest.raises(PassError, match=r"training mode.*model\.eval"):
        run_pass(graph, "fuse_conv_bn")


def test_training_batchnorm_inside_an_eval_graph_is_refused_by_the_pass() -> None:
    from graphopt.passes.fuse_conv_bn import fuse_conv_bn

    graph = captured(ConvBnRelu(), 2, 3, 8, 8)
    graph.module.bn.train()  # the graph says eval, one BatchNorm does not
    with pytest.raises(Exception, match="BatchNorm is in training mode") as caught:
        fuse_conv_bn(graph.copy())
    assert getattr(caught.value, "node", None) == "bn"


def test_decomposed_aten_spelling_with_native_batch_norm_is_folded() -> None:
    model = ConvBnRelu().eval()
    x = torch.randn(2, 3, 8, 8)
    program = torch.export.export(model, (x,)).run_decompositions()  # aten.convolution + native BN tuple
    from graphopt.capture import capture

    graph = capture(program, x)
    graph.module.training = False  # an ExportedProgram does not say whether its model was in eval mode
    graph, record = run_pass(graph, "fuse_conv_bn", tolerance=FLOAT_TOLERANCE)
    assert kinds(graph) == ["conv2d", "relu"]
    assert record.details["folded"] == ["_native_batch_norm_legit_no_training -> convolution"]
    assert_matches_eager(model, graph, 4, 3, 8, 8, tolerance=FLOAT_TOLERANCE)
