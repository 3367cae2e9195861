"""pretranspose_weights stores Linear weights transposed at compile time: no weight transpose at run time."""

from __future__ import annotations

import pytest
import torch

from graphopt.passes.pretranspose_weights import PRETRANSPOSED_FROM
from graphopt.targets.lowering.lower import export_graph
from tests.passes.models import FLOAT_TOLERANCE, Mlp, assert_matches_eager, captured, kinds, run_pass

#: ops that transpose (or permute) a tensor, in the core-ATen program the targets lower
TRANSPOSES = {"t", "transpose", "permute", "numpy_T"}


def weight_transposes(program: torch.export.ExportedProgram) -> list[str]:
    """Transposes whose input is a parameter or a constant: layout work done on every run."""
    weights = set(program.graph_signature.inputs_to_parameters) | set(program.graph_signature.inputs_to_buffers)
    weights |= set(program.graph_signature.inputs_to_lifted_tensor_constants)
    return [
        node.name
        for node in program.graph.nodes
        if node.op == "call_function"
        and str(node.target).split(".")[1] in TRANSPOSES
        and any(arg.name in weights for arg in node.all_input_nodes)
    ]


def test_linear_becomes_matmul_with_a_constant_transposed_weight() -> None:
    model = Mlp().eval()
    graph, record = run_pass(captured(model, 4, 16), "pretranspose_weights", tolerance=FLOAT_TOLERANCE)
    assert graph.text() == (
        "x = input\n"
        "fc1_weight_t = constant fc1_weight_t\n"
        "matmul = matmul(x, fc1_weight_t)\n"
        "fc1_bias = constant fc1_bias\n"
        "add = add(matmul, fc1_bias)\n"
        "relu = relu(add, inplace=False)\n"
        "fc2_weight_t = constant fc2_weight_t\n"
        "matmul_1 = matmul(relu, fc2_weight_t)\n"
        "fc2_bias = constant fc2_bias\n"
        "add_1 = add(matmul_1, fc2_bias)\n"
        "return add_1"
    )
    assert torch.equal(graph.module.fc1_weight_t, model.fc1.weight.t())
    assert graph.module.fc1_weight_t.is_contiguous()
    assert graph.node("matmul").meta[PRETRANSPOSED_FROM] == "fc1"
    assert record.details["removed_weights"] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert record.before.param_bytes == record.after.param_bytes
    assert_matches_eager(model, graph, 9, 16, tolerance=FLOAT_TOLERANCE)


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_no_weight_transpose_remains_in_what_the_targets_lower(method: str) -> None:
    model = Mlp().eval()
    graph = captured(model, 4, 16, method=method)
    assert weight_transposes(export_graph(graph))  # linear lowers to a transpose of its weight each run
    optimized, _ = run_pass(graph, "pretranspose_weights", tolerance=FLOAT_TOLERANCE)
    assert kinds(optimized) == ["matmul", "add", "relu", "matmul", "add"]
    assert weight_transposes(export_graph(optimized)) == []
    assert_matches_eager(model, optimized, 9, 16, tolerance=FLOAT_TOLERANCE)
