"""Cases of the onnx backend node tests that the CPU target got wrong (issue 19), each as a small model
built for the CPU target and compared with PyTorch eager or onnx's reference implementation.

Tolerance: the same float32 arithmetic in another order: 1e-5; float64 results: 1e-12 (a float32
intermediate would be off by ~1e-7). Infinities, zeros and shapes must be equal."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import graphopt
from graphopt.onnx.backend import GraphoptRep


def built(module, *inputs):
    """``module`` compiled for the CPU target, and its eager outputs on ``inputs``."""
    compiled = graphopt.compile(module.eval(), inputs, target="cpu", check=False)
    return compiled(*inputs), module(*inputs)


class BatchMatmul64(torch.nn.Module):
    def forward(self, a, b):
        return torch.einsum("bij,bjk->bik", a, b)


def test_float64_batch_matmul_stays_float64():
    a, b = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(5, 3, 4, dtype=torch.float64)
    got, expected = built(BatchMatmul64(), a, b)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-12, atol=1e-12)


class MaskedRowGuard(torch.nn.Module):
    """ONNX Attention's fully-masked-row guard: a row whose bias is all -inf gives zeros, not NaN."""

    def forward(self, bias):
        empty = torch.eq(bias.max(-1, keepdim=True)[0], torch.tensor(float("-inf")))
        return torch.where(empty, torch.tensor(0.0), torch.softmax(bias, -1)), bias.amax(-1)


def test_max_of_a_row_of_minus_infinity_is_minus_infinity():
    bias = torch.tensor([[0.0, 1.0, -1.0], [float("-inf")] * 3, [-3.0e38, float("-inf"), float("-inf")]])
    (probabilities, maxima), (expected, expected_maxima) = built(MaskedRowGuard(), bias)
    np.testing.assert_array_equal(maxima, expected_maxima.numpy())  # -inf, and the finite -3e38 kept
    assert not np.isnan(probabilities).any()
    np.testing.assert_allclose(probabilities, expected.numpy(), rtol=1e-5, atol=1e-5)


class Rotary(torch.nn.Module):
    """RotaryEmbedding on a (batch, seq, heads*dim) input: a concat read through a reshape."""

    def forward(self, x, cos, sin, positions):
        a, b = x.reshape(2, 3, 4, -1).chunk(2, -1)
        c, s = cos[positions].unsqueeze(2), sin[positions].unsqueeze(2)
        return torch.cat([c * a - s * b, s * a + c * b], -1).reshape(2, 3, 32)


def test_rotary_concat_through_reshape():
    generator = torch.Generator().manual_seed(0)
    x, cos, sin = (torch.randn(shape, generator=generator) for shape in ((2, 3, 32), (50, 4), (50, 4)))
    positions = torch.randint(0, 50, (2, 3), generator=generator)
    got, expected = built(Rotary(), x, cos, sin, positions)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def _model(nodes, inputs, outputs, initializers=(), opset=21):
    graph = helper.make_graph(nodes, "case", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_reshape_allowzero_to_an_empty_tensor():
    model = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 0])],
        [numpy_helper.from_array(np.array([3, 4, 0], dtype=np.int64), "shape")],
    )
    x = np.zeros((0, 3, 4), dtype=np.float32)
    (got,) = GraphoptRep(model, check=False).run([x])
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    assert tuple(got.shape) == expected.shape == (3, 4, 0)


def test_bfloat16_constant_imports():
    constant = np.array([0.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    model = _model(
        [helper.make_node("Add", ["x", "c"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [3])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [3])],
        [numpy_helper.from_array(constant, "c")],
    )
    onnx.checker.check_model(model)
    x = np.array([1.0, 2.0, -0.75], dtype=ml_dtypes.bfloat16)
    tensor = torch.from_numpy(x.view(np.uint16).copy()).view(torch.bfloat16)
    graph = graphopt.capture(model, (tensor,))
    got = graph(tensor)
    assert got.dtype == torch.bfloat16
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(got.float().numpy(), expected.astype(np.float32))


def test_optional_get_element_of_a_tensor_is_the_tensor():
    optional = helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [4]))
    model = _model(
        [helper.make_node("OptionalGetElement", ["x"], ["y"])],
        [helper.make_value_info("x", optional)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        opset=18,
    )
    x = np.array([1.0, -2.0, 3.5, 0.25], dtype=np.float32)
    (got,) = GraphoptRep(model, check=False).run([x])
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(got, expected)


def test_optional_has_element_without_an_input_is_false():
    model = _model(
        [helper.make_node("OptionalHasElement", [""], ["y"])],
        [],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, [])],
        opset=18,
    )
    (got,) = GraphoptRep(model, check=False).run([])
    (expected,) = ReferenceEvaluator(model).run(None, {})
    assert np.asarray(got).dtype == np.bool_ and np.asarray(got).shape == () and bool(got) == bool(expected) is False


def test_optional_has_element_of_a_tensor_is_true():
    model = _model(
        [helper.make_node("OptionalHasElement", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, [])],
        opset=18,
    )
    x = np.array([1.0, 2.0], dtype=np.float32)
    graph = graphopt.capture(model, (torch.from_numpy(x),))
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    assert bool(graph(torch.from_numpy(x))) == bool(expected) is True


def causal_conv_with_state():
    """CausalConvWithState's function body (opset 27) written out: a zero padding of kernel-1 columns
    made from the input's shape, the padded input convolved with a run-time weight and sliced by its own
    shape. Its shapes are static only after two rounds of folding (the padding's shape, then the
    padded input's)."""
    constant = numpy_helper.from_array
    nodes = [
        helper.make_node("Shape", ["w"], ["k"], start=2, end=3),
        helper.make_node("Sub", ["k", "one"], ["km1"]),
        helper.make_node("Shape", ["x"], ["bc"], start=0, end=2),
        helper.make_node("Concat", ["bc", "km1"], ["pad_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["pad_shape"], ["pad"]),
        helper.make_node("Concat", ["pad", "x"], ["padded"], axis=2),
        helper.make_node("Conv", ["padded", "w"], ["y"]),
        helper.make_node("Shape", ["padded"], ["length"], start=2, end=3),
        helper.make_node("Sub", ["length", "km1"], ["start"]),
        helper.make_node("Slice", ["padded", "start", "length", "axis"], ["state"]),
    ]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 1, 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 6]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 1, 3]),
        ],
        [constant(np.array([1], dtype=np.int64), "one"), constant(np.array([2], dtype=np.int64), "axis")],
    )


def test_shapes_computed_from_a_computed_shape_fold_and_build():
    model = causal_conv_with_state()
    generator = np.random.default_rng(0)
    x, w = (
        generator.standard_normal((1, 1, 6), dtype=np.float32),
        generator.standard_normal((1, 1, 4), dtype=np.float32),
    )
    graph = graphopt.capture(model, (torch.from_numpy(x), torch.from_numpy(w)))
    assert graph.capture_method != "onnx2torch"  # traced to aten ops, so a compiled target can build it
    got = GraphoptRep(model, check=False).run([x, w])
    expected = ReferenceEvaluator(model).run(None, {"x": x, "w": w})
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)


def test_dropout_with_a_run_time_ratio_is_the_identity_in_inference():
    model = _model(
        [helper.make_node("Dropout", ["x", "ratio"], ["y", "mask"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]),
            helper.make_tensor_value_info("ratio", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, [3, 4]),
        ],
    )
    x, ratio = np.random.default_rng(0).standard_normal((3, 4), dtype=np.float32), np.array(0.3, dtype=np.float32)
    got = GraphoptRep(model, check=False).run([x, ratio])
    expected = ReferenceEvaluator(model).run(None, {"x": x, "ratio": ratio})
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)
