"""Softmax and LayerNorm over the last axis on the CPU target: their rows are reduced in vector lanes
(targets/cpu/row_reductions.py) and still equal eager, on rows with and without a tail, on masked
scores, in channels-last LayerNorm and on rows far from zero."""

from __future__ import annotations

import pytest
import torch
import tvm
from torch import nn

import graphopt
from graphopt.numerics import relative_error
from graphopt.targets.cpu.row_reductions import LANES_SUFFIX, LaneRowReduction
from graphopt.targets.cpu.schedule import host_target, prepare_cpu_module
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import assert_matches_eager


class Softmax(nn.Module):
    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.dim)


class ChannelsLastNorm(nn.Module):
    """ConvNeXt's LayerNorm: NCHW -> NHWC, normalized over channels, back."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        nn.init.uniform_(self.norm.weight, 0.5, 1.5)
        nn.init.uniform_(self.norm.bias, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _fused_functions(model: nn.Module, *inputs: torch.Tensor) -> dict[str, tvm.tirx.PrimFunc]:
    mod = lower_to_relax(graphopt.capture(model, inputs))[0]
    mod = prepare_cpu_module(mod, host_target())
    return {g.name_hint: f for g, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def _lane_functions(model: nn.Module, *inputs: torch.Tensor) -> list[str]:
    """The fused functions that hold lane-reduction blocks and that ``LaneRowReduction`` schedules."""
    names = []
    for name, func in _fused_functions(model, *inputs).items():
        if LANES_SUFFIX in func.script(show_meta=False):
            assert LaneRowReduction().apply(func, host_target(), False) is not None, name
            names.append(name)
    return names


@pytest.mark.parametrize("shape", [(2, 3, 197, 197), (4, 128), (3, 40)], ids=["197-wide", "128-wide", "40-wide"])
def test_softmax_rows_match_eager(compile_cpu, shape):
    model, x = Softmax().eval(), _randn(*shape) * 4
    assert _lane_functions(model, x) == ["softmax"]
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_masked_scores_match_eager(compile_cpu):
    """Scores with -inf entries (a causal mask): the masked ones are 0, as in eager."""
    mask = torch.full((50, 50), float("-inf")).triu(1)
    model, x = Softmax().eval(), _randn(2, 50, 50) + mask
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_multihead_attention_softmax_is_reduced_in_lanes(compile_cpu):
    """nn.MultiheadAttention's safe softmax (softmax, then 0 where a row is all -inf) over 197 tokens."""
    attention = nn.MultiheadAttention(64, 4, batch_first=True).eval()

    class SelfAttention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return attention(x, x, x, need_weights=False)[0]

    model, x = SelfAttention().eval(), _randn(1, 197, 64)
    assert any(name.startswith("fused_softmax") for name in _lane_functions(model, x))
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_softmax_over_another_axis_or_a_short_row_keeps_tvms_lowering(compile_cpu):
    for model, x in [(Softmax(dim=1).eval(), _randn(2, 40, 3)), (Softmax().eval(), _randn(6, 5))]:
        assert _lane_functions(model, x) == []
        assert_matches_eager(model, compile_cpu(model, x), x)


@pytest.mark.parametrize(
    ("model", "x"),
    [
        (nn.LayerNorm(768), _randn(1, 197, 768)),
        (ChannelsLastNorm(96), _randn(1, 96, 14, 14)),
        (ChannelsLastNorm(40), _randn(2, 40, 5, 5)),
    ],
    ids=["tokens", "channels-last", "tail-only-lanes"],
)
def test_layer_norm_rows_match_eager(compile_cpu, model, x):
    model = model.eval()
    assert len(_lane_functions(model, x)) == 1
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_layer_norm_of_rows_far_from_zero_is_as_exact_as_eager(compile_cpu):
    """Rows with mean 1000 and spread 1: float32 itself keeps only ~1e-4 of each value's deviation,
    so eager is 1.6e-5 off the float64 result. The two-pass form is as close (measured 1.6e-5);
    TOPI's E[x^2] - E[x]^2, whose terms are 1e6, was 7.7e-5 off."""
    model, x = nn.LayerNorm(256).eval(), _randn(4, 256) + 1000.0
    exact = torch.nn.functional.layer_norm(x.double(), (256,)).numpy()
    eager_error = relative_error(exact, model(x).detach().numpy())
    assert relative_error(exact, compile_cpu(model, x)(x.numpy())) <= 1.5 * eager_error
