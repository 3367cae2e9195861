"""``a // b`` and ``torch.div(..., rounding_mode=...)`` on the CPU target, integers and floats: the
frontend's converter failed on integer operands. Integer results are compared exactly; float ones
too, since floor/trunc of the same float32 quotient are the same float."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import graphopt


class Divisions(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            x // 7,
            x // y,
            torch.div(x, y, rounding_mode="trunc"),
            torch.div(x, 3, rounding_mode="trunc"),
            f // 0.7,
            torch.div(f, 0.7, rounding_mode="trunc"),
        )


def test_floor_and_trunc_division_match_eager_on_negative_operands() -> None:
    x, y = torch.arange(-10, 10), torch.tensor([3, -3] * 10)
    f = torch.linspace(-3, 3, 20)
    artifact = graphopt.compile(Divisions().eval(), (x, y, f), target="cpu")
    got = artifact(x.numpy(), y.numpy(), f.numpy())
    for index, (value, want) in enumerate(zip(got, Divisions()(x, y, f), strict=True)):
        assert np.asarray(value).dtype == want.numpy().dtype, index
        assert np.array_equal(np.asarray(value), want.numpy()), index
