"""PadRaggedMatmuls: a matmul over 197 rows or columns (ViT's tokens) computes on whole row tiles and
vectors, and returns exactly the 197 rows and columns eager does."""

from __future__ import annotations

import torch
import tvm
from torch import nn

import graphopt
from graphopt.targets.cpu.packed_weights import static_shape
from graphopt.targets.cpu.ragged_matmuls import PadRaggedMatmuls
from graphopt.targets.cpu.schedule import host_target, prepare_cpu_module
from graphopt.targets.cpu.schedule_simple import vector_lanes
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import assert_matches_eager

TOKENS = 197  # a prime: no divisor is a vector width


class Scores(nn.Module):
    """Attention probabilities of 2 heads over 197 tokens: ``softmax(q @ k^T / sqrt(d))``."""

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)


def _matmul_operand_shapes(model: nn.Module, *inputs: torch.Tensor) -> list[tuple[list[int], list[int]]]:
    """The shapes of every matmul's two operands once PadRaggedMatmuls has run."""
    mod = lower_to_relax(graphopt.capture(model, inputs))[0]
    mod = PadRaggedMatmuls(vector_lanes(host_target()))(mod)
    shapes = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            if isinstance(binding.value, tvm.relax.Call) and getattr(binding.value.op, "name", "") == "relax.matmul":
                a, b = binding.value.args
                shapes.append((static_shape(a), static_shape(b)))
    return shapes


def _whole_vectors(count: int) -> int:
    lanes = vector_lanes(host_target())
    return -(-count // lanes) * lanes


def _qk(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 2, TOKENS, 16, generator=generator), torch.randn(1, 2, TOKENS, 16, generator=generator)


def test_scores_are_computed_on_whole_vectors():
    # q @ k^T: k^T's 197 columns padded to whole vectors; q's rows stay (k^T is no constant weight).
    [(a, b)] = _matmul_operand_shapes(Scores().eval(), *_qk())
    assert a[-2] == TOKENS and b[-1] == _whole_vectors(TOKENS)


def test_scores_match_eager(compile_cpu):
    q, k = _qk()
    model = Scores().eval()
    assert_matches_eager(model, compile_cpu(model, q, k), q, k)


def test_a_linear_over_197_tokens_runs_on_200_rows(compile_cpu):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU()).eval()
    x = torch.randn(1, TOKENS, 32)
    [(a, b)] = _matmul_operand_shapes(model, x)
    assert a[-2] == 200 and b[-1] == 64
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_a_constant_weight_is_padded_at_compile_time(compile_cpu):
    torch.manual_seed(0)
    model = nn.Linear(32, TOKENS).eval()
    x = torch.randn(5, 32)
    [(_, b)] = _matmul_operand_shapes(model, x)
    assert b[-1] == _whole_vectors(TOKENS)
    mod = prepare_cpu_module(lower_to_relax(graphopt.capture(model, x))[0], host_target())
    assert not [g for g in mod.get_global_vars() if "pad" in g.name_hint]  # folded: no pad kernel at run time
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_rows_and_columns_padded_together_match_eager(compile_cpu):
    torch.manual_seed(0)
    model = nn.Linear(32, TOKENS).eval()
    x = torch.randn(1, TOKENS, 32)
    [(a, b)] = _matmul_operand_shapes(model, x)
    assert (a[-2], b[-1]) == (200, _whole_vectors(TOKENS))
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_tiles_that_already_fit_are_left_alone():
    [(a, b)] = _matmul_operand_shapes(nn.Linear(32, 192).eval(), torch.randn(1, 196, 32))
    assert a[-2] == 196 and b[-1] == 192
