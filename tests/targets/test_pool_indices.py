"""Max pooling's indices on the CPU target: ``MaxUnpool2d`` and ``return_indices=True`` give torch's
numbers (TVM's frontend alone returns zeros as the indices). Indices are integers and the pooled
values are copies of inputs, so everything is compared exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt


class PoolUnpool(nn.Module):
    """SegNet's encoder/decoder step: pool with indices, unpool to the input's size."""

    def __init__(self, **pool: int | bool) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(return_indices=True, **pool)  # type: ignore[arg-type]
        self.unpool = nn.MaxUnpool2d(pool["kernel_size"], pool.get("stride"), pool.get("padding", 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values, indices = self.pool(x)
        return self.unpool(values, indices, output_size=x.shape[-2:]), indices, values


def _input() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9)
    x[0, 0, :4, :4] = 1.5  # ties: torch takes the first maximum of each window
    x[1, 2, :3, :] = float("-inf")  # windows of -inf only: torch takes their first in-bounds position
    return x


@pytest.mark.parametrize(
    "pool",
    [
        {"kernel_size": 2},
        {"kernel_size": 3, "stride": 2, "padding": 1},  # padded windows: padding never wins
        {"kernel_size": 3, "stride": 2, "ceil_mode": True},  # a last, partial window
    ],
    ids=["2x2", "3x3-s2-pad1", "3x3-s2-ceil"],
)
def test_unpool_of_pooled_indices_matches_eager_exactly(pool: dict[str, int | bool]) -> None:
    model, x = PoolUnpool(**pool).eval(), _input()
    artifact = graphopt.compile(model, (x,), target="cpu")
    with torch.no_grad():
        want = model(x)
    got = artifact(x.numpy())
    for name, value, expected in zip(("unpooled", "indices", "values"), got, want, strict=True):
        assert np.array_equal(np.asarray(value), expected.numpy()), name


def test_dilated_pool_indices_match_eager() -> None:
    model = nn.MaxPool2d(3, stride=1, padding=1, dilation=2, return_indices=True).eval()
    x = _input()
    artifact = graphopt.compile(model, (x,), target="cpu")
    values, indices = artifact(x.numpy())
    want_values, want_indices = model(x)
    assert np.array_equal(np.asarray(indices), want_indices.numpy())
    assert np.array_equal(np.asarray(values), want_values.numpy())
