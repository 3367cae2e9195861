"""float16 / bfloat16 models on the CPU target, compared with PyTorch eager.

TVM's torch frontend computed products and convolutions of half tensors as float32 (the outputs came
back float32), refused ``torch.where`` of an fp16 tensor and a 0-dim float32 one, rounded scalars to
fp16 before multiplying and summed softmax rows in fp16. Now every op has torch's dtype and is
computed as torch's CPU kernels compute it: in float32, rounded once to the half type.

Tolerance: ``HALF_ULPS`` (2) ulps of the output's type, relative to the largest output (the eager
check's bound, ``relative_error``): 2e-3 for float16, 1.6e-2 for bfloat16. TVM's float32 sums run in
another order than torch's and may flip one rounding of a half value; and TVM legalizes bfloat16
arithmetic inside a fused kernel to float32, rounding only what it stores, so an intermediate that
torch rounds may stay exact (a masked bf16 attention lands one bf16 ulp off eager). A wrong dtype or a
wrong op is off by far more. Where an op only selects or rounds once (``where``, scalar arithmetic),
the results are compared exactly.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.eager_check import HALF_ULPS
from graphopt.numerics import flatten_outputs, relative_error

HALF = [torch.float16, torch.bfloat16]


def bound(dtype: torch.dtype) -> float:
    return HALF_ULPS * torch.finfo(dtype).eps


def as_input(tensor: torch.Tensor) -> object:
    """What the compiled model takes: numpy, or the tensor for bfloat16 (numpy has no bfloat16)."""
    return tensor if tensor.dtype == torch.bfloat16 else tensor.numpy()


def run(model: nn.Module, *inputs: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(compiled outputs, eager outputs) as arrays; the build's own eager check runs too."""
    compiled = graphopt.compile(model.eval(), inputs, target="cpu")
    with torch.no_grad():
        eager = model(*inputs)
    return flatten_outputs(compiled(*(as_input(t) for t in inputs))), flatten_outputs(eager)


class MaskedAttention(nn.Module):
    """Attention with a boolean mask, as ONNX Attention's decomposition writes it."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = torch.where(mask, q @ k.transpose(-1, -2) * 0.35, float("-inf"))
        weights = torch.where(mask.any(-1, keepdim=True), torch.softmax(scores, dim=-1), torch.tensor(0.0))
        return weights @ v


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_masked_attention_in_half_builds_with_its_dtype(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g).to(dtype) for n in (5, 7, 7))
    mask = torch.rand(5, 7, generator=g) > 0.3
    mask[1] = False  # a fully masked row: where() gives it zeros, not NaN
    (got,), (want,) = run(MaskedAttention(), q, k, v, mask)
    assert got.dtype == want.dtype
    assert relative_error(want, got) <= bound(dtype)


class WhereBranches(nn.Module):
    """Branches torch promotes to the tensor's dtype: a Python float, a 0-dim float32 tensor."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            torch.where(x > 0, x, float("-inf")),
            torch.where(mask, 1.5, x),
            torch.where(mask, x, torch.tensor(0.25)),
            torch.where(mask, x, x * 2),
        )


@pytest.mark.parametrize("dtype", [*HALF, torch.int32], ids=str)
def test_where_takes_the_promoted_dtype_exactly(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 4, 5, generator=g) * 4).to(dtype)
    mask = torch.rand(3, 4, 5, generator=g) > 0.5
    got, want = run(WhereBranches(), x, mask)
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype, index
        assert np.array_equal(a.astype(np.float64), b.astype(np.float64)), index


class ScalarArithmetic(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x * 0.35, x / 3.0, 1 - x, x + 0.1, x - 2.7, x**2


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_scalar_arithmetic_rounds_once_as_torch(dtype: torch.dtype) -> None:
    """torch keeps a product's or quotient's scalar in float32 and rounds the result once (0.35 rounded
    to fp16 first gave half of ``x * 0.35`` one ulp off); a sum's scalar it rounds to the half type."""
    x = torch.randn(64, generator=torch.Generator().manual_seed(2)).to(dtype)
    got, want = run(ScalarArithmetic(), x)
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype, index
        assert np.array_equal(a.astype(np.float64), b.astype(np.float64)), index


class Reductions(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            x.sum(-1),
            x.mean(-1),
            x.var(-1),
            x.std(-1),
            torch.cumsum(x, -1),
            torch.log_softmax(x, -1),
            torch.softmax(x, -1),
            nn.functional.gelu(x),
        )


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_reductions_accumulate_in_float32(dtype: torch.dtype) -> None:
    """A 2048-long fp16 row summed (or cumulated) in fp16 is off by dozens of ulps; in float32, by at
    most one."""
    x = torch.rand(4, 2048, generator=torch.Generator().manual_seed(3)).to(dtype)
    got, want = run(Reductions(), x)
    for index, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype, index
        assert relative_error(b, a) <= bound(dtype), index


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_conv_and_linear_keep_their_dtype(dtype: torch.dtype) -> None:
    """The frontend fixed their out_dtype to float32, and an fp16 bias could not be added to it."""
    model = nn.Sequential(nn.Conv1d(4, 6, 3, padding=2), nn.Flatten(), nn.Linear(6 * 10, 5)).to(dtype)
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(4)).to(dtype)
    (got,), (want,) = run(model, x)
    assert got.dtype == want.dtype
    assert relative_error(want, got) <= bound(dtype)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_norms_build_and_match(dtype: torch.dtype) -> None:
    """relax's group_norm refused bfloat16; both norms are computed in float32, as torch's are."""
    model = nn.Sequential(nn.GroupNorm(4, 8), nn.Flatten(1), nn.LayerNorm(8 * 16)).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(0.5, 1.5)
    x = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(8)).to(dtype)
    (got,), (want,) = run(model, x)
    assert got.dtype == want.dtype
    assert relative_error(want, got) <= bound(dtype)


class Products(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a @ b, torch.bmm(a.unsqueeze(0), b.unsqueeze(0))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float64], ids=str)
def test_products_of_ints_and_doubles_keep_their_dtype(dtype: torch.dtype) -> None:
    """Integer products are exact; float64 ones within float64 rounding (1e-12 of the largest)."""
    g = torch.Generator().manual_seed(5)
    a, b = (torch.randint(-50, 50, shape, generator=g).to(dtype) for shape in ((6, 9), (9, 4)))
    if dtype == torch.float64:
        a, b = a + torch.rand(6, 9, generator=g, dtype=dtype), b / 7
    got, want = run(Products(), a, b)
    for index, (x, y) in enumerate(zip(got, want, strict=True)):
        assert x.dtype == y.dtype, index
        assert relative_error(y, x) <= (1e-12 if dtype == torch.float64 else 0.0), index


class EmptyState(nn.Module):
    """A zero-length constant concatenated in front (a causal conv's state for kernel size 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("state", torch.zeros(2, 4, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.state, x], dim=-1) * 2


def test_an_empty_constant_reaches_its_kernel() -> None:
    """torch's strides for shape (2, 4, 0), (4, 1, 1), are not TVM's compact ones: the kernel refused it."""
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(6))
    (got,), (want,) = run(EmptyState(), x)
    assert np.array_equal(got, want)


def test_bfloat16_outputs_compare_as_bfloat16() -> None:
    """The eager check reads a bfloat16 tensor as ``ml_dtypes.bfloat16`` (numpy has no bfloat16)."""
    (array,) = flatten_outputs(torch.tensor([1.0, 2.5], dtype=torch.bfloat16))
    assert array.dtype == ml_dtypes.bfloat16
    assert array.astype(np.float32).tolist() == [1.0, 2.5]


def test_bfloat16_numpy_inputs_run() -> None:
    """A bfloat16 output (an ``ml_dtypes.bfloat16`` array) fed back as an input: numpy cannot view the
    staged TVM tensor, so the call raised "Unsupported dtype in DLTensor"."""
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)
    compiled = graphopt.compile(ScalarArithmetic().eval(), (x,), target="cpu")
    first = compiled(x)[0]
    assert first.dtype == ml_dtypes.bfloat16
    again, want = compiled(first)[0], ScalarArithmetic()(ScalarArithmetic()(x)[0])[0]
    assert np.array_equal(again.astype(np.float32), want.float().numpy())
