"""Cross-member common-subexpression elimination keyed by weight content.

Members are captured separately, so a backbone they share (the same frozen module in two heads)
arrives as two copies: different attribute names, equal tensors. Here a layer (``call_module``) or
a constant (``get_attr``) is identified by what it holds, not where: its type and configuration
plus the dtype, shape and SHA-256 of every tensor's bytes. Two nodes are then the same expression
when they apply equal layers (or ops) to the same inputs, and the later one is removed, as in the
``eliminate_common_subexpressions`` pass; chains collapse from the inputs down in one sweep.
Results are bit-identical: only nodes computing exactly the same thing are merged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import fx, nn

from graphopt.ir import Graph
from graphopt.op_kinds import is_pure
from graphopt.passes.eliminate_common_subexpressions import merge_common


def tensor_fingerprint(tensor: torch.Tensor) -> tuple[str, tuple[int, ...], str]:
    """dtype, shape and SHA-256 of the bytes: equal fingerprints mean equal tensors."""
    data = tensor.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"").hexdigest()
    return str(tensor.dtype), tuple(tensor.shape), digest


def module_fingerprint(module: nn.Module) -> tuple[Any, ...] | None:
    """Type, configuration and tensor contents of a layer; None for one in training mode."""
    if any(m.training for m in module.modules()):
        return None
    tensors = tuple(
        (name, tensor_fingerprint(t)) for name, t in module.state_dict(keep_vars=True).items() if t is not None
    )
    return (type(module).__module__, type(module).__qualname__, module.extra_repr(), tensors)


def _attribute(module: nn.Module, target: str) -> Any:
    value: Any = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _identity(graph: Graph, node: fx.Node, cache: dict[str, Any]) -> Any:
    """What a node applies, independent of the attribute name it is stored under."""
    target = str(node.target)
    if node.op not in ("call_module", "get_attr"):
        return node.target
    if target not in cache:
        value = _attribute(graph.module, target)
        if isinstance(value, torch.Tensor):
            cache[target] = ("tensor", *tensor_fingerprint(value))
        elif isinstance(value, nn.Module):
            cache[target] = module_fingerprint(value)
        else:
            cache[target] = None
    return cache[target]


def merge_identical(graph: Graph) -> list[str]:
    """Merge nodes of ``graph`` (in place) that apply equal weights or ops to the same inputs.

    Returns the names of the removed nodes; layers and constants no node uses any more are
    deleted from the module, so the graph's parameter bytes drop by what was merged.
    """
    cache: dict[str, Any] = {}

    def identify(node: fx.Node) -> Any:
        if node.op not in ("call_module", "call_function", "call_method", "get_attr"):
            return None
        return _identity(graph, node, cache) if is_pure(graph.module, node) else None

    merged = merge_common(graph, identify)
    if merged:
        delete_unused(graph.module)
        graph.module.recompile()
    return merged


def delete_unused(module: fx.GraphModule) -> None:
    """Drop layers, then tensors, no node refers to. Layers first: a called layer is shared with
    the member's captured module and must not be changed; what is left unused after that sits on a
    container ``fx.GraphModule`` made for the fused graph."""
    module.delete_all_unused_submodules()
    used = {str(n.target) for n in module.graph.nodes if n.op in ("get_attr", "call_module")}
    for name, _ in list(module.named_parameters()) + list(module.named_buffers()):
        if name in used or any(name.startswith(u + ".") for u in used):
            continue
        owner, _, attribute = name.rpartition(".")
        parent = module.get_submodule(owner) if owner else module
        delattr(parent, attribute)
    for name, value in list(vars(module).items()):
        if isinstance(value, torch.Tensor) and name not in used and not name.startswith("_"):
            delattr(module, name)
