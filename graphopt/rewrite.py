"""A small pattern-rewrite engine: each rule is a pattern, a condition and a replacement, as data.

Patterns match on canonical op kinds (``op_kinds.op_kind``), so one rule covers every spelling of
an op (``nn.Dropout`` module, ``F.dropout``, ``aten.dropout.default``)::

    Rule("x * 1 -> x", Op("mul", Var("x"), Lit(1), commutative=True, exact=True),
         replace=lambda m: m["x"], when=keeps_value_of("x"))

``Op(kinds, *operands)`` matches a call whose kind is one of ``kinds`` ("transpose|permute") and
whose first positional arguments match ``operands``; ``exact`` also requires no further
arguments. ``Var`` binds anything, ``Lit`` a Python number, ``Seq`` a list argument. ``name=``
binds the matched node itself. ``replace`` returns the node that takes the root's place (an
existing node, a node it built, or the root itself after editing it in place); ``None`` declines.

``apply_rules`` rewrites to a fixed point, re-annotating shapes between rounds so conditions can
read ``match.info(name)``, and erases what the rewrites left unused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import fx

from graphopt.ir import Graph
from graphopt.metadata import NodeInfo, info
from graphopt.op_kinds import op_kind


class Pattern:
    """Base class of pattern elements."""


@dataclass(frozen=True)
class Var(Pattern):
    """Matches any argument (a node or a literal) and binds it to ``name``."""

    name: str


@dataclass(frozen=True)
class Lit(Pattern):
    """Matches a Python int/float equal to ``value`` (not a bool, not a tensor)."""

    value: float


@dataclass(frozen=True)
class Seq(Pattern):
    """Matches a list/tuple argument element by element."""

    items: tuple[Pattern, ...]

    def __init__(self, *items: Pattern) -> None:
        object.__setattr__(self, "items", items)


@dataclass(frozen=True)
class Op(Pattern):
    """Matches a call node of one of ``kinds`` whose leading arguments match ``operands``."""

    kinds: frozenset[str]
    operands: tuple[Pattern, ...]
    name: str | None = None
    commutative: bool = False
    exact: bool = False

    def __init__(
        self, kinds: str, *operands: Pattern, name: str | None = None, commutative: bool = False, exact: bool = False
    ) -> None:
        object.__setattr__(self, "kinds", frozenset(kinds.split("|")))
        object.__setattr__(self, "operands", operands)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "commutative", commutative)
        object.__setattr__(self, "exact", exact)


@dataclass
class Match:
    """A successful match: the graph, the root node and the bound names."""

    graph: Graph
    root: fx.Node
    bound: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.bound[name]

    def info(self, name: str) -> NodeInfo:
        value = self.root if name == "root" else self.bound[name]
        return info(value) if isinstance(value, fx.Node) else NodeInfo(kind="literal")

    @property
    def module(self) -> fx.GraphModule:
        return self.graph.module


@dataclass(frozen=True)
class Rule:
    """``pattern`` + ``when`` (condition on the match) -> ``replace`` (the node taking its place)."""

    name: str
    pattern: Op
    replace: Callable[[Match], fx.Node | None]
    when: Callable[[Match], bool] = lambda match: True


def _match(pattern: Pattern, value: Any, match: Match) -> bool:
    if isinstance(pattern, Var):
        if pattern.name in match.bound:
            return match.bound[pattern.name] is value
        match.bound[pattern.name] = value
        return True
    if isinstance(pattern, Lit):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == pattern.value
    if isinstance(pattern, Seq):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(pattern.items)
            and all(_match(p, v, match) for p, v in zip(pattern.items, value, strict=True))
        )
    if isinstance(pattern, Op):
        return _match_op(pattern, value, match)
    raise TypeError(f"not a pattern: {pattern!r}")


def _match_op(pattern: Op, node: Any, match: Match) -> bool:
    if not isinstance(node, fx.Node) or node.op not in ("call_module", "call_function", "call_method"):
        return False
    if op_kind(match.module, node) not in pattern.kinds:
        return False
    args = node.args
    if len(args) < len(pattern.operands) or (pattern.exact and (len(args) != len(pattern.operands) or node.kwargs)):
        return False
    orders = [args[: len(pattern.operands)]]
    if pattern.commutative and len(pattern.operands) == 2:
        orders.append((args[1], args[0]))
    for order in orders:
        saved = dict(match.bound)
        if all(_match(p, a, match) for p, a in zip(pattern.operands, order, strict=True)):
            if pattern.name:
                match.bound[pattern.name] = node
            return True
        match.bound = saved
    return False


def _erase_if_dead(graph: fx.Graph, node: Any) -> int:
    if not isinstance(node, fx.Node) or node._erased or node.users or node.op in ("placeholder", "output"):
        return 0
    if node.is_impure():
        return 0
    inputs = list(node.all_input_nodes)
    graph.erase_node(node)
    return 1 + sum(_erase_if_dead(graph, i) for i in inputs)


def apply_rules(graph: Graph, rules: list[Rule], max_rounds: int = 10) -> tuple[Counter[str], int]:
    """Rewrite ``graph`` with ``rules`` until none applies; returns (applications per rule, nodes erased)."""
    applied: Counter[str] = Counter()
    erased = 0
    fx_graph = graph.module.graph
    for _ in range(max_rounds):
        changed = False
        for node in list(fx_graph.nodes):
            if node._erased or node.op not in ("call_module", "call_function", "call_method"):
                continue  # erased earlier this round, or not a call
            for rule in rules:
                match = Match(graph, node)
                if not _match(rule.pattern, node, match) or not rule.when(match):
                    continue
                inputs = list(node.all_input_nodes)
                replacement = rule.replace(match)
                if replacement is None:
                    continue
                applied[rule.name] += 1
                changed = True
                if replacement is not node:
                    node.replace_all_uses_with(replacement)
                    fx_graph.erase_node(node)  # the rule vouches it is replaceable, even if "impure" (dropout)
                    erased += 1
                erased += sum(_erase_if_dead(fx_graph, i) for i in inputs if not i._erased)
                break
        if not changed:
            break
        graph.refresh()
    return applied, erased
