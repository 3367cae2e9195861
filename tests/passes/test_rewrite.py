"""The rule engine behind the clean-up passes, used the way a researcher adds a rule of their own."""

from __future__ import annotations

import torch
from torch import nn

from graphopt.capture import capture
from graphopt.rewrite import Lit, Match, Op, Rule, Var, apply_rules
from tests.passes.models import assert_matches_eager, kinds


class DoubleNegation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x * -1) * -1) + (x * -1) * 2


def test_a_new_rule_is_a_pattern_a_condition_and_a_replacement() -> None:
    x = Var("x")
    rule = Rule(
        "(x * -1) * -1 -> x",
        Op("mul", Op("mul", x, Lit(-1), name="inner", exact=True), Lit(-1), exact=True),
        replace=lambda m: m["x"],
        when=lambda m: len(m["inner"].users) == 1,  # the inner product is needed by nothing else
    )
    model = DoubleNegation()
    graph = capture(model, torch.randn(2, 3))
    assert kinds(graph) == ["mul", "mul", "relu", "mul", "mul", "add"]
    applied, erased = apply_rules(graph, [rule])
    assert applied == {"(x * -1) * -1 -> x": 1} and erased == 2
    assert kinds(graph) == ["relu", "mul", "mul", "add"]  # the second x * -1 is used by "* 2", so it stays
    assert_matches_eager(model, graph, 4, 3, tolerance=0.0)


def test_commutative_patterns_match_either_order_and_bind_consistently() -> None:
    class Square(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return (2 * x) + (x * y) + (y * y)

    same = Var("a")
    seen: list[str] = []

    def record(match: Match) -> None:
        seen.append(match.root.name)
        return None  # decline: only observe what matched

    rules = [
        Rule("2x", Op("mul", Var("x"), Lit(2), commutative=True), record),
        Rule("a*a", Op("mul", same, same), record),
    ]
    graph = capture(Square(), (torch.randn(2), torch.randn(2)))
    applied, _ = apply_rules(graph, rules)
    assert not applied and seen == ["mul", "mul_2"]
