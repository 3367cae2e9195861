"""Common-subexpression elimination: compute each distinct (op, inputs, arguments) once.

Two nodes are the same expression when they call the same target with the same arguments, where
node arguments compare by identity after earlier merges; so a chain of duplicates collapses from
the inputs down in one sweep. Impure or random ops (dropout in training, ``rand``), placeholders
and arguments that cannot be compared (tensors) are never merged, nor a node whose value an in-place op
changes later, or that reads one (``op_kinds.mutated_nodes``: two ``zeros`` each accumulated into by
``add_``, as onnx2torch imports ONNX Sum, are two buffers). Results are bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import fx

from graphopt.ir import Graph
from graphopt.op_kinds import is_pure, mutated_nodes
from graphopt.pass_api import PassResult, register_pass


class _UnhashableError(Exception):
    pass


def _key(value: Any) -> Any:
    if isinstance(value, fx.Node):
        return ("node", value)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if isinstance(value, slice):
        return ("slice", _key(value.start), _key(value.stop), _key(value.step))
    try:
        hash(value)
    except TypeError:
        raise _UnhashableError from None
    if hasattr(value, "shape"):  # tensors hash by identity; equal values would not merge anyway
        raise _UnhashableError
    return (type(value).__name__, value)


def _mergeable(graph: Graph, node: fx.Node) -> bool:
    if node.op not in ("call_module", "call_function", "call_method", "get_attr"):
        return False
    if not is_pure(graph.module, node):
        return False
    if node.op == "call_module":  # a layer in training mode (BatchNorm's statistics) changes itself
        return not any(m.training for m in graph.module.get_submodule(str(node.target)).modules())
    return True


def merge_common(graph: Graph, identify: Callable[[fx.Node], Any]) -> list[str]:
    """Merge nodes with the same ``(op, identify(node), arguments)``; None from ``identify`` skips a node.

    Returns the names of the removed nodes. ``identify`` says what a node applies: its target here,
    the content of its weights in ``graphopt.fusion`` (equal layers stored under different names).
    """
    seen: dict[Any, fx.Node] = {}
    merged = []
    mutated = mutated_nodes(graph.module)
    for node in list(graph.module.graph.nodes):
        if node in mutated or any(arg in mutated for arg in node.all_input_nodes):
            continue
        identity = identify(node)
        if identity is None:
            continue
        try:
            key = (node.op, identity, _key(node.args), _key(dict(node.kwargs)))
        except _UnhashableError:
            continue
        first = seen.setdefault(key, node)
        if first is not node:
            node.replace_all_uses_with(first)
            graph.module.graph.erase_node(node)
            merged.append(node.name)
    return merged


@register_pass("eliminate_common_subexpressions", reports=("merged",))
def eliminate_common_subexpressions(graph: Graph) -> PassResult:
    """Merge nodes that compute the same op on the same inputs (bit-identical)."""
    merged = merge_common(graph, lambda node: node.target if _mergeable(graph, node) else None)
    return PassResult(graph, changed=bool(merged), details={"merged": merged})
