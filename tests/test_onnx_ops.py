"""graphopt's own ONNX converters (graphopt/onnx/ops.py) and function expansion, each a one-node model
run by graphopt (import + capture) and by ONNX Runtime on the same seeded random inputs.

Tolerance: the same float32 arithmetic in another order (pool sums, transposed convolution, the
expanded Attention's matmuls): ~1e-6 relative; 1e-5 flags any real difference. Integer and bool
results must be equal."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import graphopt

TOLERANCE = 1e-5


def one_node(op, inputs, outputs, opset, **attributes):
    """A model of one ``op`` node; ``inputs``/``outputs``: (name, ONNX type, shape); constants as initializers."""
    node = helper.make_node(op, [name for name, *_ in inputs], [name for name, *_ in outputs], **attributes)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output
    for output, typed in zip(model.graph.output, inferred, strict=True):  # output shapes left to inference
        output.type.CopyFrom(typed.type)
    onnx.checker.check_model(model)
    return model


def check(model, arrays):
    """graphopt's outputs equal ONNX Runtime's on ``arrays``."""
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {value.name: array for value, array in zip(session.get_inputs(), arrays, strict=True)}
    expected = session.run(None, feed)
    graph = graphopt.capture(model, tuple(torch.from_numpy(a) for a in arrays))
    got = graph(*(torch.from_numpy(a) for a in arrays))
    got = got if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        mine = mine.detach().numpy()
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
        if theirs.dtype.kind == "f":
            np.testing.assert_allclose(mine, theirs, rtol=TOLERANCE, atol=TOLERANCE)
        else:
            np.testing.assert_array_equal(mine, theirs)


rng = np.random.default_rng(0)
F, I64 = TensorProto.FLOAT, TensorProto.INT64


def floats(*shape):
    return rng.standard_normal(shape).astype(np.float32)


POOLS = [
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 2, 1], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1, "dilations": [2, 1]}),
    ("AveragePool", {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("MaxPool", {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "dilations": [2, 2], "ceil_mode": 1}),
    ("LpPool", {"kernel_shape": [2, 2], "strides": [1, 2], "p": 3, "pads": [0, 1, 1, 0]}),
]


@pytest.mark.parametrize(("op", "attributes"), POOLS)
def test_pooling_matches_onnxruntime(op, attributes):
    model = one_node(op, [("x", F, [1, 2, 9, 8])], [("y", F, None)], 22, **attributes)
    check(model, [floats(1, 2, 9, 8)])


@pytest.mark.parametrize(
    "attributes",
    [
        {"strides": [2, 3], "pads": [1, 0, 2, 1], "output_padding": [1, 0]},
        {"strides": [2, 2], "output_shape": [11, 12], "group": 2},
        {"strides": [2, 2], "auto_pad": "SAME_UPPER", "dilations": [2, 1]},
    ],
)
def test_conv_transpose_on_a_runtime_weight(attributes):
    inputs = [("x", F, [1, 4, 5, 6]), ("w", F, [4, 3, 3, 3]), ("b", F, [3 * attributes.get("group", 1)])]
    model = one_node("ConvTranspose", inputs, [("y", F, None)], 22, **attributes)
    check(model, [floats(1, 4, 5, 6), floats(4, 3, 3, 3), floats(3 * attributes.get("group", 1))])


def test_cast_to_float8_saturates_as_onnx_says():
    x = np.array([0.3, -2.7, 500.0, -1e6, np.inf, 17.0], dtype=np.float32)
    for saturate, expected in ((1, [0.3125, -2.75, 448.0, -448.0, 448.0, 16.0]), (0, [0.3125, -2.75, np.nan])):
        model = one_node("Cast", [("x", F, [6])], [("y", TensorProto.FLOAT8E4M3FN, [6])], 23, to=17, saturate=saturate)
        graph = graphopt.capture(model, torch.from_numpy(x))
        got = graph(torch.from_numpy(x)).float().numpy()
        np.testing.assert_array_equal(got[: len(expected)], np.array(expected, dtype=np.float32))


def test_unsigned_arithmetic_runs_in_int64():
    a = rng.integers(0, 60000, (3, 4)).astype(np.uint16)
    b = rng.integers(1, 300, (3, 4)).astype(np.uint16)
    u16 = TensorProto.UINT16
    for op, out in (("Div", u16), ("Mod", u16), ("Greater", TensorProto.BOOL), ("Add", u16)):
        check(one_node(op, [("a", u16, [3, 4]), ("b", u16, [3, 4])], [("y", out, [3, 4])], 14), [a, b])


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
def test_bit_shift(direction):
    x = rng.integers(0, 2**20, (5,)).astype(np.uint32)
    y = rng.integers(0, 8, (5,)).astype(np.uint32)
    u32 = TensorProto.UINT32
    model = one_node("BitShift", [("x", u32, [5]), ("y", u32, [5])], [("z", u32, [5])], 11, direction=direction)
    check(model, [x, y])


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad_with_axes_and_negative_pads(mode):
    inputs = [("x", F, [2, 5, 6]), ("pads", I64, [4]), ("value", F, []), ("axes", I64, [2])]
    model = one_node("Pad", inputs, [("y", F, [2, 10, 9])], 21, mode=mode)
    check(model, [floats(2, 5, 6), np.array([3, -1, 2, 4]), np.array(1.5, dtype=np.float32), np.array([1, -1])])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_and_scatter_elements(reduction):
    data, updates = floats(4, 3, 2), floats(2, 2)
    indices = np.array([[1, 0], [3, -1]], dtype=np.int64)
    inputs = [("d", F, [4, 3, 2]), ("i", I64, [2, 2]), ("u", F, [2, 2])]
    check(one_node("ScatterND", inputs, [("y", F, None)], 18, reduction=reduction), [data, indices, updates])
    inputs = [("d", F, [4, 3, 2]), ("i", I64, [4, 1, 2]), ("u", F, [4, 1, 2])]
    index = np.array([[[0, 2]], [[1, -1]], [[2, 0]], [[0, 1]]], dtype=np.int64)
    model = one_node("ScatterElements", inputs, [("y", F, None)], 18, axis=1, reduction=reduction)
    check(model, [data, index, floats(4, 1, 2)])


def test_small_ops():
    x = floats(3, 4, 5)
    check(one_node("Hardmax", [("x", F, [3, 4, 5])], [("y", F, None)], 13, axis=1), [x])
    check(one_node("Hardmax", [("x", F, [3, 4, 5])], [("y", F, None)], 11, axis=1), [x])
    check(one_node("LpNormalization", [("x", F, [3, 4, 5])], [("y", F, None)], 22, axis=1, p=1), [x])
    check(one_node("GlobalMaxPool", [("x", F, [3, 4, 5])], [("y", F, None)], 22), [x])
    check(one_node("Acosh", [("x", F, [3, 4, 5])], [("y", F, None)], 22), [np.abs(x) + 1])
    axis = [("x", F, [3, 4, 5]), ("a", TensorProto.INT32, [])]
    model = one_node("CumProd", axis, [("y", F, None)], 26, exclusive=1, reverse=1)
    check(model, [x, np.array(-1, dtype=np.int32)])
    split = one_node("Split", [("x", F, [3, 4, 5])], [("a", F, None), ("b", F, None)], 18, axis=2, num_outputs=2)
    check(split, [x])
    hot = [("i", I64, [2, 3]), ("d", I64, []), ("v", F, [2])]
    model = one_node("OneHot", hot, [("y", F, None)], 11, axis=1)
    check(model, [np.array([[0, -1, 7], [2, 4, 1]]), np.array(5), np.array([-2.0, 3.0], dtype=np.float32)])


def test_function_ops_are_expanded_to_their_bodies():
    q, k, v = floats(2, 4, 6, 8), floats(2, 4, 7, 8), floats(2, 4, 7, 8)
    inputs = [("q", F, [2, 4, 6, 8]), ("k", F, [2, 4, 7, 8]), ("v", F, [2, 4, 7, 8])]
    check(one_node("Attention", inputs, [("y", F, None)], 23, is_causal=1), [q, k, v])
    # Selu with a non-default alpha: onnx2torch's converter refuses it, its function body runs
    check(one_node("Selu", [("x", F, [3, 4])], [("y", F, None)], 22, alpha=2.0), [floats(3, 4)])


def test_pad_without_a_value_but_with_axes():
    """An absent optional input before a given one (``Pad(x, pads, "", axes)``): ``axes`` was dropped."""
    node = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"])
    graph = helper.make_graph(
        [node],
        "pad",
        [helper.make_tensor_value_info("x", F, [2, 5, 6]), helper.make_tensor_value_info("pads", I64, [2])],
        [helper.make_tensor_value_info("y", F, [2, 5, 9])],
        [numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes")],
    )
    check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), [floats(2, 5, 6), np.array([1, 2])])


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reductions_over_an_empty_dimension_give_the_identity(op):
    """ONNX defines the reduction of an empty set as its identity (-inf for a max); torch.amax raised."""
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)],
        "empty",
        [helper.make_tensor_value_info("x", F, [2, 0, 4])],
        [helper.make_tensor_value_info("y", F, [2, 1, 4])],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    check(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), [np.zeros((2, 0, 4), np.float32)])


def test_prelu_with_a_broadcast_slope_traces():
    """A slope broadcast along the last axis (not the channel): onnx2torch's masked assignment had a
    data-dependent size; the ``where`` form traces, so the model compiles."""
    model = one_node("PRelu", [("x", F, [3, 4, 5]), ("s", F, [5])], [("y", F, None)], 16)
    x, slope = floats(3, 4, 5), floats(5)
    check(model, [x, slope])
    assert graphopt.capture(model, (torch.from_numpy(x), torch.from_numpy(slope))).capture_method != "onnx2torch"
