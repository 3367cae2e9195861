"""Constant folding: evaluate what depends only on parameters, buffers and constants, once.

A node is constant when it is a ``get_attr`` or a deterministic call whose inputs are all
constant (weight transposes, reshapes and casts, shape arithmetic on weights, ``torch.ones(3)``
branches). Each constant node that a run-time node reads is evaluated here, with PyTorch itself,
and replaced by one new frozen parameter (tensors) or by its literal value (ints, shapes); the
constant subgraph behind it is erased. Random and in-place ops are never constant, nor are
graphopt's quantization ops (so a quantized model keeps its int8 weights through O2).

``max_bytes`` caps what folding may materialize: a result larger than that and larger than the
constants it is computed from (an ``expand`` or ``repeat`` of a small tensor) is left to run time.
Results are bit-identical: the same PyTorch kernels run, only earlier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from graphopt.ir import Graph
from graphopt.op_kinds import is_pure, mutated_nodes
from graphopt.pass_api import PassResult, on_node, register_pass
from graphopt.passes._layers import insert_constant, remove_dead_nodes, remove_unused_attributes, unused_attributes

_LITERAL = (int, float, bool, str, torch.dtype, torch.device, type(None))


def _deterministic(module: fx.GraphModule, node: fx.Node) -> bool:
    if node.op not in ("call_function", "call_method", "call_module"):
        return False
    return is_pure(module, node) and not _is_quantization_op(node.target)


def _mutates(user: fx.Node, node: fx.Node) -> bool:
    """``user`` is an in-place op (``add_``, ``aten.add_.Tensor``) whose first argument is ``node``."""
    name = str(user.target) if user.op == "call_method" else getattr(user.target, "__name__", str(user.target))
    base = name.split(".")[0]
    return bool(user.args) and user.args[0] is node and base.endswith("_") and not base.startswith("_")


def _is_quantization_op(target: Any) -> bool:
    """graphopt's quantize/dequantize ops stay: folding ``dequantize(int8 weight)`` would turn an
    int8 model back into float32 constants, which the targets could no longer run as integers."""
    return isinstance(target, torch._ops.OpOverload) and target.namespace == "graphopt"


def _is_literal(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_literal(v) for v in value)
    return isinstance(value, _LITERAL)


def _nbytes(value: Any) -> int:
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def _substitute(node: fx.Node, literal: Any) -> None:
    for user in list(node.users):
        user.args = fx.node.map_arg(user.args, lambda a: literal if a is node else a)
        user.kwargs = fx.node.map_arg(user.kwargs, lambda a: literal if a is node else a)


@register_pass(
    "fold_constants", reports=("folded", "skipped_too_large", "removed_nodes", "removed_weights", "new_constant_bytes")
)
def fold_constants(graph: Graph, *, max_bytes: int = 16 * 2**20) -> PassResult:
    """Evaluate subgraphs that depend only on weights and constants; replace each by one parameter."""
    module = graph.module
    already_unused = unused_attributes(module)
    interpreter = fx.Interpreter(module)
    values: dict[fx.Node, Any] = {}
    source_bytes: dict[fx.Node, int] = {}
    mutated = mutated_nodes(module)  # a buffer an in-place op writes is not a constant, nor what reads it
    for node in module.graph.nodes:
        inputs = node.all_input_nodes
        if node in mutated:
            continue
        if node.op == "get_attr" or (_deterministic(module, node) and all(i in values for i in inputs)):
            with on_node(node):
                args, kwargs = interpreter.fetch_args_kwargs_from_env(node)
                values[node] = getattr(interpreter, node.op)(node.target, args, kwargs)
            interpreter.env[node] = values[node]
            own = _nbytes(values[node]) if node.op == "get_attr" else 0
            source_bytes[node] = own + sum(source_bytes[i] for i in inputs)
    folded, too_large, new_bytes = [], [], 0
    for node, value in values.items():
        if node.op == "get_attr" or all(user in values for user in node.users):
            continue  # already a constant, or only feeds other constants
        if any(_mutates(user, node) for user in node.users):
            continue  # an in-place op writes into it on every run: as a constant it would drift
        if isinstance(value, torch.Tensor):
            if _nbytes(value) > max_bytes and _nbytes(value) > source_bytes[node]:
                too_large.append(node.name)
                continue
            node.replace_all_uses_with(insert_constant(module, value, f"{node.name}_folded", before=node))
            new_bytes += _nbytes(value)
        elif _is_literal(value):
            _substitute(node, tuple(value) if isinstance(value, torch.Size) else value)
        else:
            continue
        folded.append(node.name)
    removed = remove_dead_nodes(module) if folded else []
    freed = remove_unused_attributes(module, spare=already_unused)
    details: dict[str, Any] = {"folded": folded, "skipped_too_large": too_large, "removed_nodes": removed}
    details.update({"removed_weights": freed, "new_constant_bytes": new_bytes})
    return PassResult(graph, changed=bool(folded), details=details)
