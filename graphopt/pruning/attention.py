"""Attention heads in the dependency analysis: whole heads of q/k/v/out go together.

Multi-head attention splits a projection's ``C = H * D`` output channels into ``H`` heads of
``D``: ``reshape(N, S, H, D)``, attends per head (``transpose``, ``matmul``/``softmax``/``matmul``
or ``scaled_dot_product_attention``), merges (``transpose``, ``reshape(N, S, C)``) and projects
with ``out``. Every op in between treats the head axis as a batch axis, so head ``h`` of the
output depends only on head ``h`` of q, k and v, and ``out`` reads it through its columns
``h*D .. h*D + D - 1``. Removing head ``h`` (its ``D`` rows of q, k, v and ``D`` columns of
``out``) therefore leaves the other heads computing exactly what they did; ``head_dim`` stays.

The analysis follows this as channel maps: the head split unites the ``D`` elements of each head
into one unit and puts the map on the head axis; ``transpose`` moves the map with its axis;
``matmul`` and attention tie head ``h`` of their operands; ``softmax`` over another axis passes
it through; the merge spreads each head back over its ``D`` columns. Sizes written in a reshape
(``nhead`` as a literal, ``d_model`` read from the input's shape) are recorded and rewritten to the
kept count when heads go. A per-head attention mask (head axis of size ``H``) fixes the heads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import fx

if TYPE_CHECKING:
    from graphopt.pruning.dependency import ChannelMap, DependencyAnalysis

#: Kinds this module gives channel maps to (the dependency analysis asks it about these).
KINDS = frozenset({"reshape", "transpose", "matmul", "softmax", "scaled_dot_product_attention"})


def _shape(node: Any) -> tuple[int, ...] | None:
    facts = node.meta.get("graphopt") if isinstance(node, fx.Node) else None
    return tuple(facts.shape) if facts is not None and facts.shape is not None else None


def reshape_sizes(node: fx.Node) -> tuple[list[Any], bool]:
    """The sizes a reshape/view lists, and whether they were one list argument (not varargs)."""
    sizes = node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        return list(sizes[0]), True
    return list(sizes), False


def set_reshape_size(node: fx.Node, slot: int, value: int) -> None:
    sizes, as_list = reshape_sizes(node)
    sizes[slot] = value
    node.args = (node.args[0], sizes) if as_list else (node.args[0], *sizes)


def visit(analysis: DependencyAnalysis, node: fx.Node, kind: str) -> bool:
    """Give ``node`` a head-axis channel map if it is a step of multi-head attention; False: not one."""
    if kind == "reshape":
        return _visit_reshape(analysis, node)
    if kind == "transpose":
        return _visit_transpose(analysis, node)
    if kind == "softmax":
        return _visit_softmax(analysis, node)
    if kind in ("matmul", "scaled_dot_product_attention"):
        return _visit_heads_together(analysis, node, kind)
    return False


def _source(analysis: DependencyAnalysis, node: fx.Node) -> tuple[fx.Node, ChannelMap, tuple[int, ...]] | None:
    first = node.args[0] if node.args else None
    if not isinstance(first, fx.Node) or first not in analysis.maps or _shape(first) is None:
        return None
    return first, analysis.maps[first], _shape(first)  # type: ignore[return-value]


def _record_size(analysis: DependencyAnalysis, node: fx.Node, slot: int, ids: list[int], factor: int) -> None:
    """Remember a size the reshape spells out (not ``-1``), to rewrite when units of ``ids`` go."""
    sizes, _ = reshape_sizes(node)
    if slot < len(sizes) and sizes[slot] != -1:
        analysis.reshapes.append((node, slot, ids, factor))


def _visit_reshape(analysis: DependencyAnalysis, node: fx.Node) -> bool:
    """The head split ``(..., H*D) -> (..., H, D)``, the merge back, or a reshape to the same shape."""
    found, shape = _source(analysis, node), _shape(node)
    if found is None or shape is None:
        return False
    _, channel_map, before = found
    from graphopt.pruning.dependency import ChannelMap

    sizes, _ = reshape_sizes(node)
    if len(sizes) != len(shape):
        return False
    if shape == before:  # a view to the same shape: the map stays, a spelled-out size must follow it
        _record_size(analysis, node, len(shape) + channel_map.axis, channel_map.ids, 1)
        analysis.maps[node] = channel_map
        return True
    if channel_map.axis == -1 and len(shape) == len(before) + 1 and shape[:-2] == before[:-1]:
        heads, width = shape[-2], shape[-1]
        if heads * width != before[-1] or heads < 2:
            return False
        ids = channel_map.ids
        for head in range(heads):
            for position in range(1, width):
                analysis.union.union(ids[head * width], ids[head * width + position])
        head_ids = [ids[head * width] for head in range(heads)]
        analysis.heads.update(head_ids)
        _record_size(analysis, node, len(shape) - 2, head_ids, 1)
        analysis.maps[node] = ChannelMap(-2, head_ids)
        return True
    if channel_map.axis == -2 and len(shape) == len(before) - 1 and shape[:-1] == before[:-2]:
        width = before[-1]
        _record_size(analysis, node, len(shape) - 1, channel_map.ids, width)
        analysis.maps[node] = ChannelMap(-1, [i for i in channel_map.ids for _ in range(width)])
        return True
    return False


def _visit_transpose(analysis: DependencyAnalysis, node: fx.Node) -> bool:
    found = _source(analysis, node)
    if found is None or len(node.args) < 3 or not all(isinstance(d, int) for d in node.args[1:3]):
        return False
    _, channel_map, before = found
    rank = len(before)
    first, second = (int(d) % rank for d in node.args[1:3])  # type: ignore[arg-type]
    position = rank + channel_map.axis
    position = {first: second, second: first}.get(position, position)
    from graphopt.pruning.dependency import ChannelMap

    analysis.maps[node] = ChannelMap(position - rank, channel_map.ids)
    return True


def _visit_softmax(analysis: DependencyAnalysis, node: fx.Node) -> bool:
    found = _source(analysis, node)
    if found is None:
        return False
    _, channel_map, before = found
    if node.op == "call_module":
        dim = getattr(analysis.graph.module.get_submodule(str(node.target)), "dim", None)
    else:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if not isinstance(dim, int) or dim % len(before) == len(before) + channel_map.axis:
        return False
    analysis.maps[node] = channel_map
    return True


def _visit_heads_together(analysis: DependencyAnalysis, node: fx.Node, kind: str) -> bool:
    """``matmul`` of two per-head tensors, or attention over q, k, v: head ``h`` only meets head ``h``."""
    operands = node.args[: 2 if kind == "matmul" else 3]
    maps = analysis.maps
    if len(operands) < 2 or not all(isinstance(a, fx.Node) and a in maps for a in operands):
        return False
    first = maps[operands[0]]  # type: ignore[index]
    for operand in operands:
        other, shape = maps[operand], _shape(operand)  # type: ignore[index]
        if shape is None or other.axis != first.axis or len(other.ids) != len(first.ids) or other.axis > -3:
            return False  # a head axis is a batch axis of the matrix product, never one of the last two
    for operand in operands[1:]:
        analysis.tie(first.ids, maps[operand].ids)  # type: ignore[index]
    for extra in node.all_input_nodes:
        if extra in operands:
            continue
        if extra in maps:
            return False
        shape = _shape(extra)
        if shape is not None and len(shape) >= -first.axis and shape[first.axis] != 1:
            analysis.fix(first.ids, f"{node.name} applies a per-head mask")
    from graphopt.pruning.dependency import ChannelMap

    maps[node] = ChannelMap(first.axis, first.ids)
    return True


def resize_reshapes(analysis: DependencyAnalysis, removed: set[int]) -> None:
    """Rewrite the sizes reshapes spell out to the heads (times ``factor``) that stay."""
    for node, slot, ids, factor in analysis.reshapes:
        kept = int(analysis.keep_mask(ids, removed).sum())
        if kept != len(ids):
            set_reshape_size(node, slot, kept * factor)
