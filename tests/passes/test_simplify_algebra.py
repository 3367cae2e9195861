"""simplify_algebra removes algebraic no-ops and collapses transpose/reshape chains (exact)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.passes.models import assert_matches_eager, captured, kinds, run_pass


class Algebra(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x * 1 + 0 - 0) / 1
        y = 1 * y
        y = y.transpose(1, 2).transpose(2, 1).permute(0, 2, 1).permute(0, 2, 1)
        y = torch.cat([y], dim=1)
        return y.reshape(2, 12).reshape(4, 6).view(2, 3, 4) + x


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
def test_no_ops_go_and_reshape_chain_collapses(method: str) -> None:
    model = Algebra()
    graph, record = run_pass(captured(model, 2, 3, 4, method=method), "simplify_algebra")
    assert kinds(graph) == ["reshape", "add"]
    reshape = graph.compute_nodes()[0]
    assert reshape.args[0] is graph.input_nodes()[0]  # reads x directly
    assert record.details["rules"]["transpose∘transpose"] == 2
    assert_matches_eager(model, graph, 2, 3, 4, tolerance=0.0)


def test_symbolic_structure_is_pinned() -> None:
    graph, _ = run_pass(captured(Algebra(), 2, 3, 4), "simplify_algebra")
    assert graph.text() == ("x = input\nview = reshape(x, 2, 3, 4)\nadd_1 = add(view, x)\nreturn add_1")


def test_broadcasting_and_promoting_no_ops_are_kept() -> None:
    class Broadcast(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x.transpose(0, 1).transpose(0, 1) + 0 * y  # transposes cancel, 0*y is not a no-op

    class Promote(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.int() * 1.0  # int * 1.0 is float: not x

    graph, _ = run_pass(captured(Promote(), 3, 4), "simplify_algebra")
    assert kinds(graph) == ["int", "mul"]
    torch.manual_seed(0)
    x, y = torch.randn(3, 4), torch.randn(1, 4)
    from graphopt.capture import capture

    graph, _ = run_pass(capture(Broadcast(), (x, y)), "simplify_algebra")
    assert kinds(graph) == ["mul", "add"]
