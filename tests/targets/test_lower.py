"""Lowering to Relax: the module's signature, bound parameters, unsupported ops, custom converters."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from graphopt.capture import capture
from graphopt.errors import UnsupportedOpError
from graphopt.targets import build
from graphopt.targets.lowering.lower import (
    export_graph,
    find_unsupported,
    lower_to_relax,
    origin_node,
    register_converter,
)
from tests.targets.conftest import assert_matches_eager, randomize


class TwoUnsupported(nn.Module):
    """erfinv and lgamma have no converter in TVM 0.27's from_exported_program."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.special.erfinv(torch.tanh(self.fc(x)))  # LINE_ERFINV
        z = torch.relu(y)
        return torch.lgamma(z + 1.0)  # LINE_LGAMMA


def _line_of(marker: str) -> int:
    with open(__file__) as handle:
        return next(i for i, text in enumerate(handle, 1) if text.rstrip().endswith(marker) and "_line_of" not in text)


def test_main_takes_the_inputs_and_binds_parameters_as_constants() -> None:
    model = randomize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()))
    graph = capture(model, (torch.randn(2, 3, 8, 8),))
    mod, params = lower_to_relax(graph)
    main = mod["main"]
    assert params == {}
    assert [str(p.ty) for p in main.params] == ['R.Tensor((2, 3, 8, 8), dtype="float32")']
    text = mod.script()
    assert "R.nn.conv2d" in text and "R.nn.batch_norm" in text and "R.nn.relu" in text


def test_keep_params_returns_them_beside_the_inputs() -> None:
    graph = capture(nn.Linear(5, 3), (torch.randn(2, 5),))
    mod, params = lower_to_relax(graph, keep_params=True)
    assert sorted(params) == ["p_bias", "p_weight"]
    assert len(mod["main"].params) == 3
    assert params["p_weight"].numpy().shape == (3, 5)


def test_dynamic_batch_makes_the_first_dimension_symbolic() -> None:
    graph = capture(nn.Linear(5, 3), (torch.randn(2, 5),))
    mod, _ = lower_to_relax(graph, dynamic_batch=True)
    (param,) = mod["main"].params
    first, second = param.ty.shape.values
    assert not hasattr(first, "value") and int(second) == 5


def test_exported_nodes_map_back_to_graphopt_nodes() -> None:
    model = randomize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    graph = capture(model, (torch.randn(1, 3, 6, 6),))
    program = export_graph(graph)
    origins = {n.target.__name__: origin_node(graph, n).name for n in program.graph.nodes if n.op == "call_function"}
    conv, bn = graph.compute_nodes()
    assert origins["convolution.default"] == conv.name
    assert origins["_native_batch_norm_legit_no_training.default"] == bn.name


def test_all_unsupported_ops_are_listed_with_node_and_source_line(tmp_path) -> None:
    graph = capture(TwoUnsupported().eval(), (torch.randn(3, 4),))
    problems = find_unsupported(graph, export_graph(graph))
    assert [(node, op) for node, op, _ in problems] == [
        ("special_erfinv", "aten.erfinv.default"),
        ("lgamma", "aten.lgamma.default"),
    ]
    assert [source for _, _, source in problems] == [
        f"{__file__}:{_line_of('# LINE_ERFINV')}",
        f"{__file__}:{_line_of('# LINE_LGAMMA')}",
    ]

    out_dir = tmp_path / "never_written"
    with pytest.raises(UnsupportedOpError) as raised:
        build(graph, None, target="cpu", out_dir=out_dir)
    message = str(raised.value)
    assert message.startswith("2 op(s) not supported by target 'cpu'")
    assert "\n" not in message
    assert re.search(r"aten\.erfinv\.default at node 'special_erfinv' \(.*test_lower\.py:\d+\)", message)
    assert re.search(r"aten\.lgamma\.default at node 'lgamma' \(.*test_lower\.py:\d+\)", message)
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []


class PoolsTheTVMFrontendGetsWrong(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = nn.functional.adaptive_max_pool2d(x, 3, return_indices=True)
        return values + indices.float(), nn.functional.adaptive_max_pool2d(x, 4)


def test_ops_tvm_would_get_silently_wrong_are_reported_with_the_reason() -> None:
    graph = capture(PoolsTheTVMFrontendGetsWrong(), (torch.randn(1, 2, 6, 6),))
    problems = find_unsupported(graph, export_graph(graph))
    ops = [op for _, op, _ in problems]
    assert ops == [
        "aten.adaptive_max_pool2d.default (its indices output is used, which TVM's frontend does not compute)",
        "aten.adaptive_max_pool2d.default (input size 6x6 is not a multiple of output size 4x4)",
    ]


@torch.library.custom_op("graphopt_test::scaled_tanh", mutates_args=())
def scaled_tanh(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.tanh(x) * scale


@scaled_tanh.register_fake
def _(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.empty_like(x)


class UsesCustomOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.graphopt_test.scaled_tanh(self.fc(x), 3.0)


def test_a_registered_converter_lowers_a_custom_op(monkeypatch, compile_cpu) -> None:
    """How graphopt's own ops (quantize/dequantize) reach TVM: a converter keyed by the op."""
    from tvm import relax

    from graphopt.targets.lowering import lower

    model = UsesCustomOp().eval()
    x = torch.randn(4, 6)
    with pytest.raises(UnsupportedOpError, match="scaled_tanh"):
        compile_cpu(model, x)

    def convert(node, importer):
        value = importer.env[node.args[0]]
        scale = relax.const(node.args[1], "float32")
        return importer.block_builder.emit(relax.op.multiply(relax.op.tanh(value), scale))

    monkeypatch.setattr(lower, "CUSTOM_CONVERTERS", {})
    register_converter(torch.ops.graphopt_test.scaled_tanh.default, convert)
    assert "scaled_tanh.default" in lower.CUSTOM_CONVERTERS
    assert_matches_eager(model, compile_cpu(model, x), x)
