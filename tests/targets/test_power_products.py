"""``x ** 2``, ``x ** 3`` and ``x ** 4`` compile to products on the CPU target (PowerAsProducts), which
vectorize where ``powf`` is one scalar call per element, and equal eager on negative inputs too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphopt
from graphopt.targets.cpu.schedule import PowerAsProducts
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import assert_matches_eager


class Power(nn.Module):
    def __init__(self, exponent: float) -> None:
        super().__init__()
        self.exponent = exponent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.pow(x, self.exponent)


class GeluTanh(nn.Module):
    """GPT-2's GELU (``gelu_new``), written with ``x ** 3`` as transformers writes it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * torch.pow(x, 3.0))))


def _powers_left(model: nn.Module, x: torch.Tensor) -> int:
    mod = PowerAsProducts()(lower_to_relax(graphopt.capture(model, (x,)))[0])
    return mod["main"].script().count("R.power(")


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(8, 64, generator=torch.Generator().manual_seed(seed)) * 3  # negative values included


@pytest.mark.parametrize("exponent", [2.0, 3.0, 4.0])
def test_small_integer_powers_become_products_and_match_eager(compile_cpu, exponent):
    model, x = Power(exponent).eval(), _x()
    assert _powers_left(model, x) == 0
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_other_exponents_stay_powers(compile_cpu):
    model, x = Power(2.5).eval(), _x().abs()
    assert _powers_left(model, x) == 1
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_gpt2_gelu_matches_eager(compile_cpu):
    model, x = GeluTanh().eval(), _x()
    assert _powers_left(model, x) == 0
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_a_tensor_exponent_is_left_alone():
    mod = lower_to_relax(graphopt.capture(_TensorPower(), (_x(), torch.full((64,), 3.0))))[0]
    assert PowerAsProducts()(mod)["main"].script().count("R.power(") == 1


class _TensorPower(nn.Module):
    def forward(self, x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
        return torch.pow(x, exponent)
