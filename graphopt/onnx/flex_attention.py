"""ai.onnx.preview FlexAttention: scaled dot-product attention with ``score_mod``/``prob_mod`` subgraphs.

Follows the onnx reference (``onnx/reference/ops/aionnx_preview/op_flex_attention.py``): Q and K each
scaled by sqrt(scale) in the input dtype before Q @ K^T, the scores cast to the softmax precision
(float32 for float16/bfloat16/float32 inputs, float64 for double, or ``softmax_precision``),
``score_mod``, softmax, ``prob_mod``, then probs @ V in that precision and the result in V's dtype.
Grouped-query attention repeats each K/V head over its group of query heads. The modifier subgraphs
are converted like control-flow bodies (``graphopt.onnx.control_flow.convert_body``), their input
typed with the scores' static shape so their Shape/Range arithmetic folds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

DOMAIN = "ai.onnx.preview"
#: ONNX type -> torch dtype of ``softmax_precision``
_PRECISIONS = {1: torch.float32, 10: torch.float16, 16: torch.bfloat16, 11: torch.float64}


class FlexAttention(nn.Module):
    """``forward(q, k, v, *outer)``: ``outer`` are the values the modifier subgraphs read, score_mod's first."""

    def __init__(
        self, scale: float | None, precision: torch.dtype | None, score_mod: Any, prob_mod: Any, score_reads: int
    ) -> None:
        super().__init__()
        self.scale, self.precision, self.score_reads = scale, precision, score_reads
        self.score_mod, self.prob_mod = score_mod, prob_mod

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *outer: torch.Tensor) -> torch.Tensor:
        heads, kv_heads = q.shape[1], k.shape[1]
        if heads != kv_heads:
            k = k.repeat_interleave(heads // kv_heads, dim=1)
            v = v.repeat_interleave(heads // kv_heads, dim=1)
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(q.shape[-1])
        root = torch.sqrt(torch.tensor(scale, dtype=torch.float32)).to(q.dtype)  # in float32, as the reference
        scores = (q * root) @ (k * root).transpose(-1, -2)
        precision = self.precision or (torch.float64 if q.dtype == torch.float64 else torch.float32)
        scores = scores.to(precision)
        if self.score_mod is not None:
            scores = self.score_mod(scores, *outer[: self.score_reads])[0].to(precision)
        probs = torch.softmax(scores, dim=-1)
        if self.prob_mod is not None:
            probs = self.prob_mod(probs, *outer[self.score_reads :])[0].to(precision)
        return (probs @ v.to(precision)).to(v.dtype)


def _typed_body(body: Any, elem_type: int, shape: list[Any] | None) -> Any:
    """``body`` with its one input typed as the scores (B, Hq, L, S) in the softmax precision."""
    import onnx
    from onnx import helper

    if len(body.input) != 1 or len(body.output) != 1:
        raise NotImplementedError("a FlexAttention modifier subgraph must have one input and one output")
    typed = onnx.GraphProto()
    typed.CopyFrom(body)
    del typed.input[:]
    typed.input.append(helper.make_tensor_value_info(body.input[0].name, elem_type, shape))
    return typed


def flex_attention_converter(node: Any, graph: Any) -> Any:
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    from graphopt.onnx.control_flow import _opsets, convert_body
    from graphopt.onnx.converters import _declared_shape
    from graphopt.onnx.ops import _elem_type

    a = node.attributes
    q, k, v = node.input_values[:3]
    q_type = _elem_type(graph, q)
    precision_type = int(a["softmax_precision"]) if "softmax_precision" in a else (11 if q_type == 11 else 1)
    if precision_type not in _PRECISIONS:
        raise NotImplementedError(
            f"FlexAttention softmax_precision {precision_type} (float, float16, bfloat16, double)"
        )
    q_shape, k_shape = _declared_shape(graph, q), _declared_shape(graph, k)
    scores = [q_shape[0], q_shape[1], q_shape[2], k_shape[2]] if q_shape and k_shape else None
    modifiers: list[Any] = []
    reads: list[list[str]] = []
    for name in ("score_mod", "prob_mod"):
        converted, outer = None, list[str]()
        if name in a:
            body = _typed_body(a[name].g, precision_type, scores)
            converted, outer, _ = convert_body(body, graph, _opsets(node))
        modifiers.append(converted)
        reads.append(outer)
    precision = _PRECISIONS[precision_type] if "softmax_precision" in a else None
    scale = float(a["scale"]) if "scale" in a else None
    attention = FlexAttention(scale, precision, modifiers[0], modifiers[1], len(reads[0]))
    mapping = OnnxMapping((q, k, v, *reads[0], *reads[1]), node.output_values)
    return OperationConverterResult(torch_module=attention, onnx_mapping=mapping)


def register() -> None:
    """Register FlexAttention (ai.onnx.preview, version 1) in onnx2torch's registry."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription

    from graphopt.onnx.ml import dotless_module_names

    dotless_module_names()
    _CONVERTER_REGISTRY.setdefault(OperationDescription(DOMAIN, "FlexAttention", 1), flex_attention_converter)
