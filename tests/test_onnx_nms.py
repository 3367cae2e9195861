"""NonMaxSuppression imported without torchvision (graphopt/onnx/nms.py): the selected indices equal ONNX
Runtime's on random overlapping boxes, in both box formats, with and without a score threshold."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper

import graphopt


def nms_model(center_point_box, with_score_threshold):
    names = ["boxes", "scores", "max_out", "iou", *(["score"] if with_score_threshold else [])]
    node = helper.make_node("NonMaxSuppression", names, ["selected"], center_point_box=center_point_box)
    inputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, (2, 40, 4)),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, (2, 3, 40)),
        helper.make_tensor_value_info("max_out", TensorProto.INT64, (1,)),
        helper.make_tensor_value_info("iou", TensorProto.FLOAT, (1,)),
        *([helper.make_tensor_value_info("score", TensorProto.FLOAT, (1,))] if with_score_threshold else []),
    ]
    output = helper.make_tensor_value_info("selected", TensorProto.INT64, (None, 3))
    graph = helper.make_graph([node], "nms", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


@pytest.mark.parametrize("center_point_box", [0, 1])
@pytest.mark.parametrize("with_score_threshold", [False, True])
def test_selected_boxes_equal_onnxruntime(center_point_box, with_score_threshold):
    rng = np.random.default_rng(center_point_box)
    corner = rng.uniform(0, 10, (2, 40, 2)).astype(np.float32)
    size = rng.uniform(0.5, 4, (2, 40, 2)).astype(np.float32)
    boxes = np.concatenate([corner, size] if center_point_box else [corner, corner + size], axis=-1)
    scores = np.round(rng.uniform(0, 1, (2, 3, 40)), 1).astype(np.float32)  # rounded: ties in score
    arrays = [boxes, scores, np.array([7], np.int64), np.array([0.3], np.float32)]
    arrays += [np.array([0.4], np.float32)] if with_score_threshold else []
    model = nms_model(center_point_box, with_score_threshold)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)})
    tensors = tuple(torch.from_numpy(a) for a in arrays)
    got = graphopt.capture(model, tensors)(*tensors)
    assert len(expected) > 20  # overlaps, limits and thresholds all at work
    np.testing.assert_array_equal(got.numpy(), expected)
