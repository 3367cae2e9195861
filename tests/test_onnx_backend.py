"""graphopt's ONNX backend (graphopt/onnx/backend.py) on the CPU target: inputs that set shapes (Slice's
starts, Reshape's shape, a window's size) are taken at run time, as ONNX Runtime takes them, by compiling
per distinct value; and the converters whose run-time operands used to be read as numbers (Pad's fill
value, ReverseSequence's lengths) compile with them as inputs. Every result is compared with ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper

import graphopt
from graphopt.onnx.backend import GraphoptBackend, GraphoptRep, bind_inputs, shape_setting_inputs
from graphopt.targets.lowering.lower import export_graph

pytestmark = pytest.mark.slow  # each test compiles one to three artifacts

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def one_node(op, inputs, outputs=("y",), opset=18, **attributes):
    """One ``op`` node; ``inputs``: (name, elem type, shape) graph inputs, in order."""
    node = helper.make_node(op, [name for name, _, _ in inputs], list(outputs), **attributes)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in inputs],
        [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in outputs],
    )
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def onnxruntime_outputs(model, arrays):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {value.name: a for value, a in zip(session.get_inputs(), arrays, strict=True)})


def assert_like_onnxruntime(model, rep, arrays):
    got = rep.run(arrays)
    for mine, theirs in zip(got, onnxruntime_outputs(model, arrays), strict=True):
        mine = np.asarray(mine)
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)


def test_a_slice_whose_starts_are_an_input_compiles_per_value_at_run_time():
    model = one_node("Slice", [("x", F, [4, 6]), ("starts", I64, [2]), ("ends", I64, [2])])
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    rep = GraphoptBackend.prepare(model)
    assert rep.shape_inputs == {"starts", "ends"} and not rep.compiled  # nothing compiled before run()
    assert_like_onnxruntime(model, rep, [x, np.array([1, 2], np.int64), np.array([3, 5], np.int64)])
    assert_like_onnxruntime(model, rep, [x, np.array([0, 0], np.int64), np.array([4, 2], np.int64)])
    assert len(rep.compiled) == 2  # another value, another artifact (another output shape)
    assert_like_onnxruntime(model, rep, [x + 1, np.array([1, 2], np.int64), np.array([3, 5], np.int64)])
    assert len(rep.compiled) == 2  # the same starts and ends: the first artifact again, with new data


def test_shape_setting_inputs_follow_the_data_flow_but_not_shape():
    """An input reaching Reshape's shape through Cast sets a shape; one whose Shape is taken does not."""
    nodes = [
        helper.make_node("Cast", ["n"], ["n64"], to=I64),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Reshape", ["x", "n64"], ["r"]),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F, [2, 3]), helper.make_tensor_value_info("n", TensorProto.INT32, [2])],
        [helper.make_tensor_value_info("r", F, None), helper.make_tensor_value_info("y", F, None)],
    )
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert shape_setting_inputs(model) == ["n"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert_like_onnxruntime(model, GraphoptRep(model), [x, np.array([3, 2], np.int32)])


def test_pad_with_a_run_time_fill_value_compiles_and_reads_it():
    model = one_node("Pad", [("x", F, [2, 3]), ("pads", I64, [4]), ("value", F, [])])
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    rep = GraphoptRep(model)
    assert rep.shape_inputs == {"pads"}
    for fill in (7.5, -1.0):  # the fill is data: one artifact for both
        assert_like_onnxruntime(model, rep, [x, np.array([0, 1, 1, 0], np.int64), np.array(fill, np.float32)])
    assert len(rep.compiled) == 1


@pytest.mark.parametrize("batch_axis", [0, 1])
def test_reverse_sequence_takes_its_lengths_at_run_time(batch_axis):
    shape = [3, 4] if batch_axis == 0 else [4, 3]
    model = one_node(
        "ReverseSequence", [("x", F, shape), ("lengths", I64, [3])], batch_axis=batch_axis, time_axis=1 - batch_axis
    )
    x = np.arange(12, dtype=np.float32).reshape(shape)
    rep = GraphoptRep(model)
    assert not rep.shape_inputs
    for lengths in ([1, 4, 2], [4, 3, 1]):
        assert_like_onnxruntime(model, rep, [x, np.array(lengths, np.int64)])
    assert len(rep.compiled) == 1


def test_col2im_compiles_as_one_scatter():
    model = one_node(
        "Col2Im", [("x", F, [1, 4, 9]), ("image", I64, [2]), ("block", I64, [2])], strides=[1, 1], pads=[0, 0, 0, 0]
    )
    onnx.checker.check_model(model)
    x = np.random.default_rng(0).standard_normal((1, 4, 9)).astype(np.float32)
    sizes = {"image": np.array([4, 4], np.int64), "block": np.array([2, 2], np.int64)}
    graph = graphopt.capture(bind_inputs(model, sizes), torch.from_numpy(x))
    exported = export_graph(graph).graph  # what the CPU target lowers
    ops = [str(node.target) for node in exported.nodes if node.op == "call_function"]
    assert sum("scatter" in op for op in ops) == 1, ops  # one scatter, not one slice-add per block offset
    assert_like_onnxruntime(model, GraphoptRep(model), [x, *sizes.values()])
