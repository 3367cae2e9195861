"""Constant shape operands of imported ONNX models (graphopt/onnx/constants.py): Slice's starts, Squeeze's
axes, Tile's repeats ... written as initializers, as exporters write them, are read as numbers, so the
model is traced into graphopt's IR and builds for the CPU target; the same operands given as graph
inputs are named in a one-line error.

Every compiled result is compared with ONNX Runtime on the same inputs (same float32 arithmetic: equal
within 1e-6)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import graphopt
from graphopt.errors import GraphoptError
from graphopt.onnx.constants import shape_operand_inputs

F = TensorProto.FLOAT
rng = np.random.default_rng(0)


def model_with(op, x_shape, operands, opset=18, **attributes):
    """One ``op`` node on a float input ``x``; ``operands`` (name -> array) are initializers, or graph
    inputs where the array is None-wrapped as ``("input", array)``."""
    names = ["x", *operands]
    initializers, inputs = [], [helper.make_tensor_value_info("x", F, x_shape)]
    for name, value in operands.items():
        if isinstance(value, tuple):
            inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, value[1].shape))
        else:
            initializers.append(numpy_helper.from_array(value, name))
    outputs = ["y", "indices"] if op == "TopK" else ["y"]
    node = helper.make_node(op, names, outputs, **attributes)
    graph = helper.make_graph(
        [node], op, inputs, [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs]
    )
    graph.initializer.extend(initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)


def onnxruntime_outputs(model, arrays):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {value.name: array for value, array in zip(session.get_inputs(), arrays, strict=True)}
    return session.run(None, feed)


def i64(*values):
    return np.array(values, dtype=np.int64)


CASES = {
    "Slice": ((4, 6), {"starts": i64(1, -1), "ends": i64(3, -7), "axes": i64(0, 1), "steps": i64(1, -2)}),
    "Squeeze": ((1, 3, 1, 5), {"axes": i64(0, -2)}),
    "Unsqueeze": ((3, 5), {"axes": i64(0, 3)}),
    "Tile": ((2, 3), {"repeats": i64(2, 1)}),
    "Expand": ((3, 1), {"shape": i64(2, 3, 4)}),
    "TopK": ((3, 5), {"K": i64(2)}),
    "CumSum": ((3, 5), {"axis": np.array(1, dtype=np.int64)}),
}


@pytest.mark.parametrize("op", sorted(CASES))
def test_constant_shape_operands_are_traced(op):
    shape, operands = CASES[op]
    model = model_with(op, shape, operands)
    x = rng.standard_normal(shape).astype(np.float32)
    graph = graphopt.capture(model, torch.from_numpy(x))
    assert graph.capture_method in ("symbolic_trace", "export")  # not onnx2torch's opaque graph
    got = graph(torch.from_numpy(x))
    got = got if isinstance(got, tuple) else (got,)
    for mine, theirs in zip(got, onnxruntime_outputs(model, [x]), strict=True):
        np.testing.assert_allclose(mine.numpy(), theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["Slice", "Squeeze", "Tile", "TopK"])
def test_constant_shape_operands_build_for_the_cpu_target(op):
    shape, operands = CASES[op]
    model = model_with(op, shape, operands)
    x = rng.integers(0, 3, shape).astype(np.float32)  # ties: TopK keeps the lower index first
    compiled = graphopt.compile(model, torch.from_numpy(x), target="cpu")
    got = compiled(x)
    got = got if isinstance(got, tuple) else (got,)
    for mine, theirs in zip(got, onnxruntime_outputs(model, [x]), strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=1e-6, atol=1e-6)


def test_shape_operands_given_as_graph_inputs_are_named_in_the_error():
    starts = i64(1)
    model = model_with("Slice", (4, 6), {"starts": ("input", starts), "ends": i64(3), "axes": i64(0)})
    assert shape_operand_inputs(model) == [("starts", "Slice starts at node '#0'")]
    x = rng.standard_normal((4, 6)).astype(np.float32)
    graph = graphopt.capture(model, (torch.from_numpy(x), torch.from_numpy(starts)))
    assert torch.equal(graph(torch.from_numpy(x), torch.from_numpy(starts)), torch.from_numpy(x[1:3]))
    with pytest.raises(GraphoptError, match=r"'starts' \(Slice starts at node '#0'\).*fallback='torch'"):
        graphopt.compile(graph, None, target="cpu", check=False)


def test_shape_computations_of_static_inputs_fold_to_constants():
    """Shape -> Slice -> Concat -> Reshape (what function bodies and exporters write to flatten the last
    two dimensions): with static input shapes the Reshape target is a constant, so the model is traced."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    constants = [numpy_helper.from_array(i64(v), n) for n, v in (("zero", 0), ("one", 1), ("minus_one", -1))]
    graph = helper.make_graph(
        nodes,
        "flatten",
        [helper.make_tensor_value_info("x", F, (2, 3, 4))],
        [helper.make_tensor_value_info("y", F, (2, 12))],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    captured = graphopt.capture(model, torch.from_numpy(x))
    assert captured.capture_method in ("symbolic_trace", "export")
    np.testing.assert_array_equal(captured(torch.from_numpy(x)).numpy(), x.reshape(2, 12))


def test_float_constants_and_qdq_pairs_are_not_folded():
    """A DequantizeLinear of a constant int8 weight stays (it becomes graphopt's int8 weight, computed
    by the integer kernels); only integer and bool values (shapes, axes, indices) are folded."""
    from graphopt.onnx.constants import fold_shape_computations

    weight = numpy_helper.from_array(np.arange(6, dtype=np.int8).reshape(2, 3), "w")
    scale = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "s")
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wf"]), helper.make_node("MatMul", ["x", "wf"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", F, (1, 2))],
        [helper.make_tensor_value_info("y", F, (1, 3))],
        [weight, scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert fold_shape_computations(model) is model
