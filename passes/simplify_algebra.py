"""Algebraic simplification: rewrites that compute the same values with fewer ops.

- ``x * 1``, ``1 * x``, ``x / 1``, ``x + 0``, ``0 + x``, ``x - 0`` -> ``x``, when the result keeps
  ``x``'s shape and dtype (a broadcast or a type promotion is not a no-op);
- a transpose/permute of a transpose/permute whose permutations cancel -> ``x``;
- a reshape of a reshape/flatten -> one reshape of the original tensor (both keep row-major
  order, so only the last shape matters);
- ``cat([x])`` -> ``x``.

All are exact: results are bit-identical.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

from graphopt.ir import Graph
from graphopt.metadata import info
from graphopt.pass_api import PassResult, register_pass
from graphopt.rewrite import Lit, Match, Op, Rule, Seq, Var, apply_rules

X = Var("x")


def _keeps_x(match: Match) -> bool:
    if not isinstance(match["x"], fx.Node):
        return False
    source, result = match.info("x"), match.info("root")
    return bool(source.shapes) and source.shapes == result.shapes and source.dtypes == result.dtypes


def permutation(node: fx.Node) -> tuple[int, ...] | None:
    """The axis permutation a transpose/permute/t node applies, from its input's annotated rank."""
    shape = info(node.args[0]).shape if isinstance(node.args[0], fx.Node) else None
    if shape is None:
        return None
    rank = len(shape)
    axes = list(range(rank))
    name = str(node.target if node.op == "call_method" else getattr(node.target, "__name__", node.target))
    if name.split(".")[0] == "t":
        if rank == 2:
            axes = [1, 0]
        return tuple(axes)
    rest: list[Any] = list(node.args[1:])
    if name.split(".")[0] == "permute":
        dims: Any = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
        dims = node.kwargs.get("dims", dims)
        return tuple(int(d) % rank for d in dims) if len(dims) == rank else None
    first = node.kwargs.get("dim0", rest[0] if rest else None)
    second = node.kwargs.get("dim1", rest[1] if len(rest) > 1 else None)
    if not isinstance(first, int) or not isinstance(second, int):
        return None
    first, second = first % rank, second % rank
    axes[first], axes[second] = axes[second], axes[first]
    return tuple(axes)


def _permutations_cancel(match: Match) -> bool:
    inner, outer = permutation(match["inner"]), permutation(match.root)
    if inner is None or outer is None or len(inner) != len(outer):
        return False
    return all(inner[outer[i]] == i for i in range(len(outer)))


def _reshape_original(match: Match) -> fx.Node:
    """Point the outer reshape at the inner one's input; a view becomes a reshape (x may be strided)."""
    node = match.root
    node.replace_input_with(match["inner"], match["x"])
    if node.op == "call_method" and node.target == "view":
        node.target = "reshape"
    elif str(node.target) in ("aten.view.default", "aten._unsafe_view.default"):
        node.target = torch.ops.aten.reshape.default
    return node


RULES = [
    Rule("x*1", Op("mul", X, Lit(1), commutative=True, exact=True), lambda m: m["x"], when=_keeps_x),
    Rule("x/1", Op("div", X, Lit(1), exact=True), lambda m: m["x"], when=_keeps_x),
    Rule("x+0", Op("add", X, Lit(0), commutative=True, exact=True), lambda m: m["x"], when=_keeps_x),
    Rule("x-0", Op("sub", X, Lit(0), exact=True), lambda m: m["x"], when=_keeps_x),
    Rule(
        "transpose∘transpose",
        Op("transpose|permute", Op("transpose|permute", X, name="inner")),
        lambda m: m["x"],
        when=_permutations_cancel,
    ),
    Rule(
        "reshape∘reshape",
        Op("reshape", Op("reshape|flatten", X, name="inner")),
        _reshape_original,
        when=lambda m: isinstance(m["x"], fx.Node),
    ),
    Rule("cat of one tensor", Op("cat", Seq(X)), lambda m: m["x"], when=_keeps_x),
]


@register_pass("simplify_algebra", reports=("simplified", "rules"))
def simplify_algebra(graph: Graph) -> PassResult:
    """Remove x*1, x+0, x-0, x/1, cancelling transposes, reshape chains, cat of one tensor (exact)."""
    applied, _ = apply_rules(graph, RULES)
    count = sum(applied.values())
    return PassResult(graph, changed=count > 0, details={"simplified": count, "rules": dict(applied)})
