"""``torch.remainder`` (``a % b``) of floats on the CPU target (``targets/lowering/remainder.py``): TVM's
``floor_mod`` gave NaN for a finite ``a`` modulo an infinite ``b`` (ONNX Mod's edge cases) and lost
the sign of a zero result. Compared exactly with eager, signs of zeros included (NaN where eager has
NaN); integer remainders still go to the frontend and are checked exactly too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt

INF, NAN = float("inf"), float("nan")


class Remainders(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.remainder(a, b), a % 2.5


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    number = ~np.isnan(want)
    return bool(
        np.array_equal(np.isnan(got), ~number)
        and np.array_equal(got[number], want[number])
        and np.array_equal(np.signbit(got[number]), np.signbit(want[number]))
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_remainder_matches_eager_on_infinities_zeros_and_nan(dtype: torch.dtype) -> None:
    a = torch.tensor([0.0, -0.0, 0.0, -0.0, -3, 3, -1, 1, INF, -INF, 1, 1, NAN, 1, 7.5, -7.5, 7.5, -7.5], dtype=dtype)
    b = torch.tensor([-2.0, 2, 2, -2, INF, INF, -INF, -INF, 2, 2, 0, -0.0, 2, NAN, 2, 2, -2, -2], dtype=dtype)
    artifact = graphopt.compile(Remainders().eval(), (a, b), target="cpu")
    for index, (got, want) in enumerate(zip(artifact(a.numpy(), b.numpy()), Remainders()(a, b), strict=True)):
        assert _same(np.asarray(got), want.numpy()), (index, np.asarray(got).tolist(), want.tolist())


def test_integer_remainder_keeps_the_divisors_sign() -> None:
    a, b = torch.arange(-7, 8, dtype=torch.int32), torch.tensor([3, -3, 4] * 5, dtype=torch.int32)

    class IntegerRemainder(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a % b

    artifact = graphopt.compile(IntegerRemainder().eval(), (a, b), target="cpu")
    assert np.array_equal(np.asarray(artifact(a.numpy(), b.numpy())), (a % b).numpy())
