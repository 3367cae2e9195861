"""``x ** y`` with a tensor exponent on the CPU target (``targets/lowering/power.py``): integer powers
failed to build ("power only applies to float") and a float base with an unsigned exponent fell back
to PyTorch. Integer results are compared exactly with eager, wrapped-around products and negative
exponents included; float results within float32 rounding (a relative 1e-6: one ``pow`` call each)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import graphopt


class Power(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.pow(x, y)


def _bases_and_exponents(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Every base in -3..7 against exponents -2..5, 31, 32, 33, 62, 63 and 100: small exact powers,
    products that wrap around the type, and negative exponents (0, 1 or -1 in torch)."""
    bases = torch.arange(-3, 8, dtype=dtype)
    exponents = torch.tensor([-2, -1, 0, 1, 2, 3, 4, 5, 31, 32, 33, 62, 63, 100], dtype=dtype)
    return bases.repeat_interleave(len(exponents)), exponents.repeat(len(bases))


def test_integer_powers_are_exact_for_int32_and_int64() -> None:
    for dtype in (torch.int32, torch.int64):
        x, y = _bases_and_exponents(dtype)
        artifact = graphopt.compile(Power().eval(), (x, y), target="cpu")
        got = np.asarray(artifact(x.numpy(), y.numpy()))
        want = torch.pow(x, y).numpy()
        assert got.dtype == want.dtype, dtype
        assert np.array_equal(got, want), (dtype, x[got != want], y[got != want])


def test_integer_power_broadcasts_a_row_of_exponents() -> None:
    x = torch.arange(-4, 5, dtype=torch.int32).reshape(9, 1)
    y = torch.arange(0, 6, dtype=torch.int32).reshape(1, 6)
    artifact = graphopt.compile(Power().eval(), (x, y), target="cpu")
    assert np.array_equal(np.asarray(artifact(x.numpy(), y.numpy())), torch.pow(x, y).numpy())


def test_float_base_with_unsigned_exponent_builds_without_fallback() -> None:
    x = torch.linspace(-2.5, 3.0, 12)
    y = torch.arange(0, 12, dtype=torch.int64).to(torch.uint32)
    artifact = graphopt.compile(Power().eval(), (x, y), target="cpu")  # no fallback: this raised before
    got, want = np.asarray(artifact(x.numpy(), y.numpy())), torch.pow(x, y).numpy()
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


class NumberToPower(nn.Module):
    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return 3**y


def test_number_to_an_integer_tensor_power_is_exact() -> None:
    y = torch.tensor([0, 1, 5, 20, 39, 40, 41, 63, -1], dtype=torch.int64)
    artifact = graphopt.compile(NumberToPower().eval(), y, target="cpu")
    assert np.array_equal(np.asarray(artifact(y.numpy())), NumberToPower()(y).numpy())
