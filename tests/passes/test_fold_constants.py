"""fold_constants evaluates weight-only subgraphs once and stores the result as one parameter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.passes.models import assert_matches_eager, captured, run_pass


class WeightMath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 8))
        self.b = nn.Parameter(torch.randn(4))
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.w * self.scale).t().contiguous().t()  # weight arithmetic and layout
        rows = self.w.shape[0] * 2 // 2  # shape arithmetic on a weight
        y = F.linear(x, w, self.b + torch.ones(4))  # a constant branch
        return y.reshape(-1, rows)


def test_weight_subgraphs_become_parameters_and_shapes_literals() -> None:
    model = WeightMath().eval()
    graph, record = run_pass(captured(model, 2, 8), "fold_constants")
    assert graph.text() == (
        "x = input\n"
        "t_1_folded = constant t_1_folded\n"
        "add_folded = constant add_folded\n"
        "linear = linear(x, t_1_folded, add_folded)\n"
        "reshape = reshape(linear, -1, 4)\n"
        "return reshape"
    )
    assert sorted(record.details["folded"]) == ["add", "floordiv", "t_1"]
    assert "w" not in dict(graph.module.named_parameters())  # its only readers were folded
    assert_matches_eager(model, graph, 5, 8, tolerance=0.0)


def test_export_spelling_folds_the_same() -> None:
    model = WeightMath().eval()
    graph, _ = run_pass(captured(model, 2, 8, method="export"), "fold_constants")
    assert [graph.info(n).kind for n in graph.compute_nodes()] == ["linear", "reshape"]
    assert_matches_eager(model, graph, 5, 8, tolerance=0.0)


class Broadcast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.randn(1, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b.expand(512, 64)  # folding would store 512x the parameter


@pytest.mark.parametrize(("limit", "folded"), [(1024, False), (2**20, True)])
def test_size_cap_stops_materializing_large_tensors(limit: int, folded: bool) -> None:
    graph, record = run_pass(captured(Broadcast(), 512, 64), "fold_constants", max_bytes=limit)
    assert record.changed is folded
    assert (record.details["skipped_too_large"] == ["expand"]) is not folded
    assert ("expand" in [graph.info(n).kind for n in graph.compute_nodes()]) is not folded


def test_random_ops_are_not_constant() -> None:
    class Noise(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.randn(3)

    from graphopt.passes.fold_constants import fold_constants

    result = fold_constants(captured(Noise(), 2, 3).copy())
    assert not result.changed


class InPlaceOnConstant(torch.nn.Module):
    """T5's relative-position buckets: a constant computation then an in-place add into it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buckets = torch.arange(4) * 2
        buckets.add_(1)
        return x[:, buckets]


def test_a_value_an_in_place_op_writes_into_is_not_folded() -> None:
    model = InPlaceOnConstant().eval()
    for method in ("symbolic_trace", "export"):
        graph, _ = run_pass(captured(model, 2, 9, method=method), "fold_constants")
        x = torch.randn(2, 9)
        for _ in range(3):  # a folded buffer would grow by one on every run
            assert torch.equal(graph.module(x), model(x)), method
