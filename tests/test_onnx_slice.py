"""ONNX Slice as graphopt's own module (``graphopt.onnx.shape_ops.Slice``): its constant operands reach
``torch.export`` as numbers. onnx2torch's Slice read them with ``.numpy()``, which export's fake tensors
refuse, so a graph that ``symbolic_trace`` cannot follow (a Gather on a graph input) and slices by
constants, as the function bodies of NegativeLogLikelihoodLoss and RotaryEmbedding do, kept
onnx2torch's graph and no compiled target could build it. Values are compared exactly with onnx's
reference evaluator: slicing only moves them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import graphopt

BIG = np.iinfo(np.int64).max

#: (starts, ends, axes, steps): clamped bounds, negative steps and axes, an axis left out, an empty slice.
SLICES = [
    ([1], [3], [1], [1]),
    ([0, -1], [BIG, -BIG - 1], [0, 2], [2, -1]),
    ([-2], [-BIG - 1], [-1], [-2]),
    ([3, 0], [1, 4], [1, 0], [-1, 3]),
    ([5], [2], [2], [1]),  # empty
    ([-10], [10], [-2], [1]),
]


def _gather_then_slice(starts: list[int], ends: list[int], axes: list[int], steps: list[int]) -> onnx.ModelProto:
    """``Slice(Gather(data, rows), ...)``: the Gather's indices are a graph input."""
    constants = {"starts": starts, "ends": ends, "axes": axes, "steps": steps}
    nodes = [
        helper.make_node("Gather", ["data", "rows"], ["picked"], axis=0),
        helper.make_node("Slice", ["picked", "starts", "ends", "axes", "steps"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gather_slice",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [4, 5, 6]),
            helper.make_tensor_value_info("rows", TensorProto.INT64, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(v, dtype=np.int64), name) for name, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(120, dtype=np.float32).reshape(4, 5, 6), np.array([3, 0, 2], dtype=np.int64)


@pytest.mark.parametrize("operands", SLICES)
def test_captured_slice_matches_onnx_reference(operands: tuple[list[int], ...]) -> None:
    model = _gather_then_slice(*operands)
    data, rows = _inputs()
    graph = graphopt.capture(model, (data, rows))
    assert graph.capture_method != "onnx2torch", graph.notes  # traced, so a compiled target can build it
    want = ReferenceEvaluator(model).run(None, {"data": data, "rows": rows})[0]
    got = np.asarray(graph(*graph.example_inputs))
    assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.slow
def test_gather_then_slice_builds_for_the_cpu_target_and_matches_onnx_reference() -> None:
    model = _gather_then_slice(*SLICES[1])
    data, rows = _inputs()
    artifact = graphopt.compile(model, (data, rows), target="cpu")
    want = ReferenceEvaluator(model).run(None, {"data": data, "rows": rows})[0]
    got = np.asarray(artifact(data, rows))
    assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["test_nllloss_NCd1d2_with_weight_reduction_mean_expanded", "test_rotary_embedding_with_rotary_dim_expanded"],
)
def test_expanded_function_bodies_build_for_the_cpu_target(name: str) -> None:
    """Function bodies that Gather by a graph input and Slice by constants, through graphopt's ONNX
    backend on the CPU target (no fallback), against the node case's reference outputs."""
    from benchmarks.onnx_conformance import node_cases, run_cpu

    (case,) = [case for case in node_cases(None) if case.name == name]
    assert run_cpu(case) == "pass|"
