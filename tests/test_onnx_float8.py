"""The float8 types (and float4e2m1, float8e8m0), which graphopt carries in float32: a cast rounds to the
type's values exactly as the onnx reference does (ml_dtypes), and it compiles for the CPU target.

Casts are exact operations, so every comparison is bit for bit (NaN matching NaN, zeros' signs too)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx.numpy_helper import saturate_cast, to_float8e8m0
from onnx.reference import ReferenceEvaluator

import graphopt
from graphopt.onnx.narrow import cast_narrow

FLOAT8 = {
    TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    TensorProto.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
    TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2,
    TensorProto.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz,
}
#: every float16 (all float8 values, ties between them, overflow, subnormals, infinities, NaNs)
EVERY_FLOAT16 = np.arange(2**16, dtype=np.uint16).view(np.float16)
#: where float16 is too coarse: float32 values just beside the float8 types' ties and limits
FINITE = EVERY_FLOAT16[np.isfinite(EVERY_FLOAT16)].astype(np.float32)
NEAR_TIES = np.concatenate([np.nextafter(FINITE, np.float32(side)) for side in (-np.inf, np.inf)])


def assert_same_floats(got, expected):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    both_nan = np.isnan(got) & np.isnan(expected)
    same = (got == expected) & (np.signbit(got) == np.signbit(expected))
    assert (same | both_nan).all(), f"{(~(same | both_nan)).sum()} values differ"


@pytest.mark.parametrize("onnx_type", list(FLOAT8), ids=lambda t: TensorProto.DataType.Name(t))
@pytest.mark.parametrize("saturate", [True, False])
def test_cast_rounds_every_value_as_the_onnx_reference(onnx_type, saturate):
    for values in (EVERY_FLOAT16, NEAR_TIES, NEAR_TIES.astype(np.float64)):
        reference = saturate_cast(values, FLOAT8[onnx_type]) if saturate else values.astype(FLOAT8[onnx_type])
        got = cast_narrow(torch.from_numpy(values), onnx_type, saturate)
        assert got.dtype == torch.float32
        assert_same_floats(got.numpy(), reference.astype(np.float32))


def test_float4_and_e8m0_casts_match_the_reference():
    values = np.concatenate([EVERY_FLOAT16.astype(np.float32), NEAR_TIES])
    float4 = saturate_cast(values, ml_dtypes.float4_e2m1fn).astype(np.float32)
    assert_same_floats(cast_narrow(torch.from_numpy(values), TensorProto.FLOAT4E2M1).numpy(), float4)
    for saturate in (True, False):
        for mode in ("up", "down", "nearest"):
            e8m0 = to_float8e8m0(values, saturate, mode).astype(ml_dtypes.float8_e8m0fnu).astype(np.float32)
            got = cast_narrow(torch.from_numpy(values), TensorProto.FLOAT8E8M0, saturate, mode)
            assert_same_floats(got.numpy(), e8m0)


def model_of(nodes, inputs, outputs, initializers=(), opset=23):
    graph = helper.make_graph(
        nodes,
        "float8",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


EDGES = np.array([0.3, -2.7, 464.0, 465.0, 61440.0, -1e6, np.inf, -np.inf, np.nan, -0.0, 2**-10, -(2**-17)], np.float32)


@pytest.mark.parametrize("onnx_type", list(FLOAT8), ids=lambda t: TensorProto.DataType.Name(t))
def test_cast_to_float8_and_back_compiles_for_the_cpu_target(onnx_type):
    """float -> float8 (no saturation: overflow gives NaN or infinity) -> float, on the CPU target."""
    model = model_of(
        [
            helper.make_node("Cast", ["x"], ["q"], to=onnx_type, saturate=0),
            helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT),
        ],
        [("x", TensorProto.FLOAT, [len(EDGES)])],
        [("y", TensorProto.FLOAT, [len(EDGES)])],
    )
    (expected,) = ReferenceEvaluator(model).run(None, {"x": EDGES})
    compiled = graphopt.compile(model, (torch.from_numpy(EDGES),), target="cpu")
    assert_same_floats(compiled(torch.from_numpy(EDGES)), expected)


def test_float8_input_and_dequantize_on_the_cpu_target():
    """A float8e4m3fn input is given as float32 holding float8 values; DequantizeLinear scales it."""
    codes = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)
    model = model_of(
        [helper.make_node("DequantizeLinear", ["x", "scale"], ["y"])],
        [("x", TensorProto.FLOAT8E4M3FN, [256]), ("scale", TensorProto.FLOAT, [])],
        [("y", TensorProto.FLOAT, [256])],
    )
    scale = np.array(0.5, np.float32)
    (expected,) = ReferenceEvaluator(model).run(None, {"x": codes, "scale": scale})
    carried = torch.from_numpy(codes.astype(np.float32))
    compiled = graphopt.compile(model, (carried, torch.from_numpy(scale)), target="cpu")
    assert_same_floats(compiled(carried, torch.from_numpy(scale)), expected)


def test_quantize_to_float8_on_the_cpu_target():
    model = model_of(
        [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["y"], saturate=1)],
        [("x", TensorProto.FLOAT, [len(EDGES)]), ("scale", TensorProto.FLOAT, [])],
        [("y", TensorProto.FLOAT8E5M2, [len(EDGES)])],
        [helper.make_tensor("zero", TensorProto.FLOAT8E5M2, [], [0.0])],
    )
    scale = np.array(0.25, np.float32)
    (expected,) = ReferenceEvaluator(model).run(None, {"x": EDGES, "scale": scale})
    compiled = graphopt.compile(model, (torch.from_numpy(EDGES), torch.from_numpy(scale)), target="cpu")
    assert_same_floats(compiled(torch.from_numpy(EDGES), torch.from_numpy(scale)), expected.astype(np.float32))


def test_a_float8_input_is_given_as_float32_and_says_so():
    model = model_of(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        [("x", TensorProto.FLOAT8E4M3FN, [5])],
        [("y", TensorProto.FLOAT, [5])],
    )
    with pytest.raises(graphopt.InputError, match="give float32 holding float8_e4m3fn values"):
        graphopt.capture(model, torch.zeros(5, dtype=torch.float16))
    (example,) = graphopt.onnx.io.inputs_like_onnx(model)  # random example inputs hold float8 values
    assert torch.equal(cast_narrow(example, TensorProto.FLOAT8E4M3FN), example)
