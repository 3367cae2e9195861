"""ai.onnx.preview FlexAttention (graphopt/onnx/flex_attention.py) on the CPU target against the onnx
reference: the modifier subgraphs (a causal mask written as -inf, a soft cap), grouped-query heads.

Tolerance: the same float32 attention with another summation order and exp: ~1e-6 relative at these
sizes; 1e-5 flags any real difference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import graphopt

F = TensorProto.FLOAT


def flex_model(q_heads, kv_heads, length, **attributes):
    shapes = {"Q": [1, q_heads, length, 8], "K": [1, kv_heads, length, 8], "V": [1, kv_heads, length, 8]}
    node = helper.make_node("FlexAttention", ["Q", "K", "V"], ["Y"], domain="ai.onnx.preview", **attributes)
    graph = helper.make_graph(
        [node],
        "flex",
        [helper.make_tensor_value_info(n, F, s) for n, s in shapes.items()],
        [helper.make_tensor_value_info("Y", F, [1, q_heads, length, 8])],
    )
    opsets = [helper.make_opsetid("", 26), helper.make_opsetid("ai.onnx.preview", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def causal_score_mod(length):
    """scores where key <= query, -inf elsewhere (a constant mask, as a model exporter writes it)."""
    future = numpy_helper.from_array(~np.tril(np.ones((length, length), bool)), "future")
    minus_inf = numpy_helper.from_array(np.array(-np.inf, np.float32), "minus_inf")
    return helper.make_graph(
        [helper.make_node("Where", ["future", "minus_inf", "scores"], ["masked"])],
        "causal",
        [helper.make_tensor_value_info("scores", F, None)],
        [helper.make_tensor_value_info("masked", F, None)],
        [future, minus_inf],
    )


def soft_cap_prob_mod():
    cap = numpy_helper.from_array(np.array(0.5, np.float32), "cap")
    nodes = [helper.make_node("Div", ["probs", "cap"], ["a"]), helper.make_node("Tanh", ["a"], ["b"])]
    nodes.append(helper.make_node("Mul", ["b", "cap"], ["capped"]))
    return helper.make_graph(
        nodes,
        "cap",
        [helper.make_tensor_value_info("probs", F, None)],
        [helper.make_tensor_value_info("capped", F, None)],
        [cap],
    )


@pytest.mark.parametrize(
    ("q_heads", "kv_heads", "modifiers"),
    [(4, 4, {}), (4, 2, {"scale": 0.3}), (2, 2, {"score_mod": "causal", "prob_mod": "cap"})],
    ids=["plain", "grouped-query", "causal-and-capped"],
)
def test_flex_attention_on_the_cpu_target_matches_the_reference(q_heads, kv_heads, modifiers):
    length = 5
    attributes = dict(modifiers)
    if attributes.get("score_mod") == "causal":
        attributes["score_mod"] = causal_score_mod(length)
    if attributes.get("prob_mod") == "cap":
        attributes["prob_mod"] = soft_cap_prob_mod()
    model = flex_model(q_heads, kv_heads, length, **attributes)
    onnx.checker.check_model(model)
    rng = np.random.default_rng(0)
    shapes = ([1, q_heads, length, 8], [1, kv_heads, length, 8], [1, kv_heads, length, 8])
    q, k, v = (rng.standard_normal(shape, dtype=np.float32) for shape in shapes)
    (expected,) = ReferenceEvaluator(model).run(None, {"Q": q, "K": k, "V": v})
    tensors = tuple(torch.from_numpy(a) for a in (q, k, v))
    compiled = graphopt.compile(model, tensors, target="cpu")
    np.testing.assert_allclose(np.asarray(compiled(*tensors)), expected, rtol=1e-5, atol=1e-6)
