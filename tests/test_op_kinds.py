"""op_kinds: one name per operation whichever way the graph spells it, and which nodes are pure."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from graphopt.op_kinds import is_pure, op_kind


class Spellings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x) + torch.relu(x) + F.relu(x) + x.relu()


def test_every_spelling_of_relu_is_one_kind() -> None:
    module = fx.symbolic_trace(Spellings())
    kinds = [op_kind(module, n) for n in module.graph.nodes if n.op != "placeholder" and n.op != "output"]
    assert kinds.count("relu") == 4
    assert kinds.count("add") == 3


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x) + torch.rand_like(x)
        y.add_(1.0)
        return self.drop(y) * 2


def test_random_and_in_place_nodes_are_not_pure() -> None:
    module = fx.symbolic_trace(Mixed())
    mul = next(n for n in module.graph.nodes if n.name == "mul")
    with module.graph.inserting_after(mul):  # tracing writes ``y += x`` out of place; a graph may not
        module.graph.call_function(operator.iadd, (mul, mul)).name = "iadd"
    purity = {n.name: is_pure(module, n) for n in module.graph.nodes}
    assert purity["fc"] and purity["mul"]
    assert not purity["rand_like"]  # a new draw each call
    assert not purity["add_"] and not purity["iadd"]  # change their input
    assert not purity["drop"]  # random in training mode, a module whose type says so
    assert not purity["x"] and not purity["output"]
