"""Common-subexpression elimination never merges buffers that an in-place op writes: two ``zeros``
each accumulated into by ``add_`` (how onnx2torch imports ONNX Sum) are two different values."""

from __future__ import annotations

import torch
from torch import fx, nn

import graphopt


class TwoAccumulators(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        first = torch.zeros_like(x)
        first.add_(x)
        second = torch.zeros_like(x)
        second.add_(y)
        return first * 10 + second


def test_two_accumulated_zeros_stay_two_buffers() -> None:
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])
    module = fx.symbolic_trace(TwoAccumulators().eval())
    graph = graphopt.capture(module, (x, y))
    optimized, _ = graphopt.optimize(graph, "O2")
    assert torch.equal(optimized.module(x, y), TwoAccumulators()(x, y))
