"""Negative and run-time indices: every gather reads in bounds and means what PyTorch means.

TVM 0.27 lowers ``x[:, -1]`` to ``take(x, -1, mode="fast")``, a read before the tensor (issue 14:
``x[:, -1] * 2`` was off by 1e18, a GRU's last step by 1e31). Structure: after lowering, constant
indices are non-negative and run-time ones are wrapped. Numerics: the built model matches eager at
negative and non-negative run-time indices.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from graphopt.capture import capture
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import assert_matches_eager


class Gathers(nn.Module):
    """Each way PyTorch code indexes: select, tensor index (one and two axes), gather, index_select."""

    def forward(self, x: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, ...]:
        last = x[:, -1] * 2 + x[:, 1]
        corner = x[-1, :, -2]
        rows = x[i]
        pairs = x[i, i]
        gathered = torch.gather(x, 1, (i + 2).view(1, 2, 1).expand(2, 2, 3))
        selected = torch.index_select(x, 1, i + 2)
        return last, corner, rows, pairs, gathered, selected


def test_constant_indices_become_non_negative_and_run_time_ones_wrap() -> None:
    graph = capture(Gathers(), (torch.randn(2, 5, 3), torch.tensor([0, -1])))
    mod, _ = lower_to_relax(graph)
    text = mod.script()
    takes = re.findall(r"R\.take\((\w+), (R\.const\([^)]*\)|\w+), axis=(\d+), mode=\"(\w+)\"\)", text)
    constant_indices = [index for _, index, _, _ in takes if index.startswith("R.const")]
    # x[:, -1] -> 4 (axis of 5), x[-1] -> 1 (axis of 2), then [:, -2] -> 1 (axis of 3); x[:, 1] stays 1
    assert sorted(constant_indices) == ['R.const(1, "int64")'] * 3 + ['R.const(4, "int64")']
    assert not any("-" in index for index in constant_indices), takes
    assert all(mode == "wrap" for _, index, _, mode in takes if not index.startswith("R.const")), takes
    assert "R.floor_mod(i, R.const(5" in text and "R.floor_mod(i, R.const(2" in text  # x[i, i]
    assert all(mode == "clip" for _, index, _, mode in takes if index.startswith("R.const")), takes
    assert 'mode="fast"' not in text


def test_gathers_match_eager_at_negative_and_positive_run_time_indices(compile_cpu) -> None:
    model = Gathers()
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    compiled = compile_cpu(model, x, torch.tensor([0, -1]))
    for index in ([0, -1], [-2, 1], [1, 0]):
        assert_matches_eager(model, compiled, x, torch.tensor(index))
