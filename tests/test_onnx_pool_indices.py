"""ONNX MaxPool's ``Indices`` output (flat over the whole input, row- or column-major) through the
CPU target, against ONNX Runtime: indices exactly, values exactly (copies of inputs). Not against
the onnx reference: for ``storage_order=1`` at stride 1 it leaves out the (n, c) plane's offset,
where ONNX Runtime and the spec's "flattened index" include it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import graphopt


def _max_pool(storage_order: int, **attributes: object) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], storage_order=storage_order, **attributes)
    graph = helper.make_graph(
        [node],
        "max_pool_indices",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 7, 6])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", TensorProto.INT64, None),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])


@pytest.mark.parametrize(
    "storage_order, attributes",
    [
        (0, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 0, 1]}),
        (1, {"kernel_shape": [2, 2], "ceil_mode": 1}),
    ],
    ids=["row-major-asymmetric-pads", "column-major-ceil"],
)
def test_indices_match_onnx_runtime(storage_order: int, attributes: dict[str, object], tmp_path: Path) -> None:
    model = _max_pool(storage_order, **attributes)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want_values, want_indices = session.run(None, {"x": x})
    onnx.save(model, tmp_path / "pool.onnx")
    artifact = graphopt.compile(str(tmp_path / "pool.onnx"), None, target="cpu")
    values, indices = artifact(x)
    assert np.array_equal(np.asarray(indices), want_indices)
    assert np.array_equal(np.asarray(values), want_values)
