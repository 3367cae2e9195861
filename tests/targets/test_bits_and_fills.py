"""Bit tricks and non-finite fills on the CPU target, which both failed to build: ``x >> n`` / ``x << n``
(the operators, not ``bitwise_*_shift``) had no converter, and ``full_like(x, -inf)`` (a mask's fill)
failed in TVM's legalization. All results are exact, so they are compared exactly."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import graphopt


class FloatFields(nn.Module):
    """The exponent and mantissa fields of float32 values, and 2**e rebuilt from its bits."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bits = x.view(torch.int32)
        exponent = (bits >> 23) & 0xFF
        return exponent, bits & 0x7FFFFF, ((exponent.clamp(1, 254)) << 23).view(torch.float32)


def test_shift_operators_read_float_bits_as_eager_does() -> None:
    x = torch.tensor([1.0, -3.5, 1e-30, 6.5e4, 0.0, -0.0, float("inf")])
    artifact = graphopt.compile(FloatFields().eval(), (x,), target="cpu")
    for got, want in zip(artifact(x.numpy()), FloatFields()(x), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want.numpy())


class MaskedScores(nn.Module):
    """Attention-style masking: scores where allowed, -inf elsewhere, and NaN marking missing values."""

    def forward(self, scores: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masked = torch.where(allowed, scores, torch.full_like(scores, float("-inf")))
        missing = torch.where(scores > 1.0, torch.full_like(scores, float("nan")), scores)
        return masked.softmax(-1), missing


def test_non_finite_full_like_builds_and_matches_eager() -> None:
    scores = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0))
    allowed = torch.ones(4, 4, dtype=torch.bool).tril().expand(2, 4, 4).contiguous()
    artifact = graphopt.compile(MaskedScores().eval(), (scores, allowed), target="cpu")
    got = artifact(scores.numpy(), allowed.numpy())
    want = MaskedScores()(scores, allowed)
    np.testing.assert_allclose(np.asarray(got[0]), want[0].numpy(), rtol=1e-6, atol=1e-7)  # softmax: float32 order
    np.testing.assert_array_equal(np.asarray(got[1]), want[1].numpy())
