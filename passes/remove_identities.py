"""Remove ops that return their input unchanged at inference time.

Each rule replaces the op by its input, so the result is bit-identical:

- Dropout in eval mode (``nn.Dropout`` not training, ``F.dropout(training=False)``,
  ``aten.dropout(train=False)``) and ``nn.Identity`` / ``clone``;
- ``contiguous`` on a tensor already laid out row-major on the example inputs (a strided one keeps it:
  a later ``view`` needs the copy, as in a channel shuffle ``view -> transpose -> contiguous -> view``,
  and so may any op downstream that reads strides);
- a reshape/view/flatten whose output shape equals its input shape;
- a cast (``.float()``, ``.to(dtype)``, ``aten._to_copy``) to the dtype the tensor already has,
  without a device change, and the dtype guard ``torch.export`` puts before such a cast.

Shapes and dtypes come from the graph's annotations on its example inputs, so a no-op reshape is
one that is a no-op for the captured shapes.
"""

from __future__ import annotations

import torch
from torch import fx

from graphopt.ir import Graph
from graphopt.pass_api import PassResult, register_pass
from graphopt.rewrite import Match, Op, Rule, Var, apply_rules

X = Var("x")


def _dropout_inactive(match: Match) -> bool:
    node = match.root
    if node.op == "call_module":
        return not match.module.get_submodule(str(node.target)).training
    if isinstance(node.target, torch._ops.OpOverload):
        return len(node.args) > 2 and node.args[2] is False
    training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
    return training is False


def _same_shape_and_dtype(match: Match) -> bool:
    if not isinstance(match["x"], fx.Node):
        return False
    source, result = match.info("x"), match.info("root")
    return bool(source.shapes) and source.shapes == result.shapes and source.dtypes == result.dtypes


def _already_row_major(match: Match) -> bool:
    source = match.info("x")
    return _same_shape_and_dtype(match) and bool(source.row_major) and all(source.row_major)


def _layout_kept(match: Match) -> bool:
    """``nn.Identity`` or a ``clone`` that keeps the layout; ``clone(memory_format=...)`` is a
    ``contiguous`` (or a channels-last copy) and goes only where the tensor is row-major already."""
    memory_format = match.root.kwargs.get("memory_format")
    if memory_format is None or memory_format is torch.preserve_format:
        return _same_shape_and_dtype(match)
    return memory_format is torch.contiguous_format and _already_row_major(match)


def _no_device_change(match: Match) -> bool:
    values = list(match.root.args[1:]) + list(match.root.kwargs.values())
    moves = any(isinstance(v, (str, torch.device)) for v in values) or "device" in match.root.kwargs
    return not moves and _same_shape_and_dtype(match)


def _metadata_holds(match: Match) -> bool:
    """export's ``_assert_tensor_metadata(x, dtype=...)`` guard, already true for the captured x."""
    dtype = match.root.kwargs.get("dtype")
    source = match.info("x")
    return bool(source.dtypes) and (dtype is None or str(dtype).replace("torch.", "") == source.dtype)


RULES = [
    Rule("eval dropout", Op("dropout", X), lambda m: m["x"], when=_dropout_inactive),
    Rule("identity", Op("identity", X), lambda m: m["x"], when=_layout_kept),
    Rule("contiguous", Op("contiguous", X), lambda m: m["x"], when=_already_row_major),
    Rule("no-op reshape", Op("reshape|flatten", X), lambda m: m["x"], when=_same_shape_and_dtype),
    Rule("no-op cast", Op("cast", X), lambda m: m["x"], when=_no_device_change),
    Rule("metadata assert", Op("_assert_tensor_metadata", X), lambda m: m["x"], when=_metadata_holds),
]


@register_pass("remove_identities", reports=("removed", "rules"))
def remove_identities(graph: Graph) -> PassResult:
    """Remove eval Dropout, Identity, contiguous of row-major tensors and no-op reshapes/casts (bit-identical)."""
    applied, _ = apply_rules(graph, RULES)
    removed = sum(applied.values())
    return PassResult(graph, changed=removed > 0, details={"removed": removed, "rules": dict(applied)})
