"""eliminate_common_subexpressions and eliminate_dead_code (both bit-identical)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.passes.models import assert_matches_eager, captured, kinds, run_pass


class Repeated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.fc(x)) * 2
        b = torch.relu(self.fc(x)) * 2  # the same expression again
        unused = torch.sigmoid(a)  # noqa: F841 - a dead branch
        return a + b


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_cse_merges_the_duplicate_chain(method: str) -> None:
    model = Repeated().eval()
    graph, record = run_pass(captured(model, 2, 4, method=method), "eliminate_common_subexpressions")
    expected = ["linear", "relu", "mul", "add"] + (["sigmoid"] if method == "symbolic_trace" else [])
    assert sorted(kinds(graph)) == sorted(expected)
    assert len(record.details["merged"]) == 3
    add = next(n for n in graph.compute_nodes() if graph.info(n).kind == "add")
    assert add.args[0] is add.args[1]
    assert_matches_eager(model, graph, 3, 4, tolerance=0.0)


def test_cse_never_merges_random_ops() -> None:
    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.rand_like(x) + torch.rand_like(x)

    from graphopt.passes.eliminate_common_subexpressions import eliminate_common_subexpressions

    result = eliminate_common_subexpressions(captured(Noisy(), 2, 2).copy())  # random: cannot verify by running
    assert not result.changed and kinds(result.graph) == ["rand_like", "rand_like", "add"]


def test_dce_removes_the_dead_branch() -> None:
    model = Repeated().eval()
    graph, record = run_pass(captured(model, 2, 4), "eliminate_dead_code")
    assert record.details["removed_nodes"] == ["sigmoid"]
    assert "sigmoid" not in kinds(graph)
    assert_matches_eager(model, graph, 3, 4, tolerance=0.0)
