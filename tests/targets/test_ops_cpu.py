"""Every op class the cpu target lowers, compiled and compared with PyTorch eager (float32).

Each model has non-trivial parameters; BatchNorm and LayerNorm get random statistics and affine
terms (``randomize``), since default ones make a wrong lowering look right.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.targets.conftest import assert_matches_eager, randomize


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) * torch.sigmoid(x)


class Views(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4)
        y = y.transpose(1, 2).contiguous()
        return torch.flatten(y, 1) - x.flatten(1).mean(dim=1, keepdim=True)


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 3, 1)
        self.b = nn.Conv2d(4, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x), x], dim=1)


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        scores = torch.bmm(q, k.transpose(1, 2)) / 4.0
        return torch.matmul(F.softmax(scores, dim=-1), v)


class EmbeddingBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.norm = nn.LayerNorm(16)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.norm(self.embed(tokens)).sum(dim=1), dim=-1)


def _randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


IMAGE = (2, 4, 9, 9)

CASES = {
    "linear": (lambda: nn.Linear(20, 7), [(3, 20)]),
    "linear_3d_no_bias": (lambda: nn.Linear(20, 7, bias=False), [(2, 5, 20)]),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3), [IMAGE]),
    "conv2d_strided_padded": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, bias=False), [IMAGE]),
    "conv2d_depthwise": (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4), [IMAGE]),
    "conv2d_grouped_dilated": (lambda: nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), [IMAGE]),
    "conv_bn": (lambda: nn.Sequential(nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6)), [IMAGE]),
    "batch_norm_1d": (lambda: nn.Sequential(nn.Linear(10, 12), nn.BatchNorm1d(12)), [(5, 10)]),
    "relu": (lambda: nn.Sequential(nn.Linear(8, 8), nn.ReLU()), [(4, 8)]),
    "relu6": (lambda: nn.Sequential(nn.Linear(8, 8), nn.ReLU6()), [(4, 8)]),
    "conv_hardtanh_nhwc": (lambda: nn.Sequential(nn.Conv2d(4, 6, 3), nn.Hardtanh(-0.5, 0.7)), [IMAGE]),
    "gelu": (lambda: nn.Sequential(nn.Linear(8, 8), nn.GELU()), [(4, 8)]),
    "gelu_tanh": (lambda: nn.Sequential(nn.Linear(8, 8), nn.GELU(approximate="tanh")), [(4, 8)]),
    "silu": (lambda: nn.Sequential(nn.Linear(8, 8), nn.SiLU()), [(4, 8)]),
    "sigmoid": (lambda: nn.Sequential(nn.Linear(8, 8), nn.Sigmoid()), [(4, 8)]),
    "tanh": (lambda: nn.Sequential(nn.Linear(8, 8), nn.Tanh()), [(4, 8)]),
    "hardswish": (lambda: nn.Sequential(nn.Linear(8, 8), nn.Hardswish()), [(4, 8)]),
    "add_mul_residual": (Residual, [IMAGE]),
    "max_pool": (lambda: nn.MaxPool2d(3, stride=2, padding=1), [IMAGE]),
    "avg_pool": (lambda: nn.AvgPool2d(3, stride=2, padding=1), [IMAGE]),
    "adaptive_avg_pool_1x1": (lambda: nn.AdaptiveAvgPool2d(1), [IMAGE]),
    "adaptive_avg_pool_3x3": (lambda: nn.AdaptiveAvgPool2d(3), [IMAGE]),
    "adaptive_max_pool_1x1": (lambda: nn.AdaptiveMaxPool2d(1), [IMAGE]),
    "adaptive_max_pool_3x3": (lambda: nn.AdaptiveMaxPool2d(3), [IMAGE]),
    "flatten_reshape_transpose_permute": (Views, [(2, 4, 3, 3)]),
    "cat": (Concat, [IMAGE]),
    "softmax": (lambda: nn.Softmax(dim=1), [(3, 11)]),
    "layer_norm": (lambda: nn.LayerNorm(12), [(2, 5, 12)]),
    "matmul_bmm_softmax": (Attention, [(2, 6, 8), (2, 7, 8), (2, 7, 5)]),
    "dropout_eval_is_identity": (lambda: nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)), [(4, 8)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_eager(name: str, compile_cpu) -> None:
    factory, shapes = CASES[name]
    torch.manual_seed(0)
    model = randomize(factory())
    inputs = [_randn(*shape, seed=i + 1) for i, shape in enumerate(shapes)]
    assert_matches_eager(model, compile_cpu(model, *inputs), *inputs)


def test_depthwise_1x1_conv_with_bias(compile_cpu) -> None:
    """Its reduction domain (1x1 kernel, one channel per group) is all unit loops; the bias must be
    added once, not also in the reduction's init (schedule_simple.inline_spatial)."""
    model = randomize(nn.Conv2d(4, 4, 1, groups=4, bias=True))
    x = _randn(*IMAGE)
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_embedding_with_integer_tokens(compile_cpu) -> None:
    torch.manual_seed(0)
    model = randomize(EmbeddingBag())
    tokens = torch.randint(0, 50, (3, 6), generator=torch.Generator().manual_seed(2))
    compiled = compile_cpu(model, tokens)
    assert [s.to_dict() for s in compiled.manifest.inputs] == [{"name": "tokens", "shape": [3, 6], "dtype": "int64"}]
    assert_matches_eager(model, compiled, tokens)


def test_batch_norm_uses_running_statistics_not_batch_statistics(compile_cpu) -> None:
    """The from_fx bug in TVM 0.27: eval-mode BN computed with the batch's own statistics."""
    model = randomize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
    x = _randn(4, 3, 10, 10)
    compiled = compile_cpu(model, x)
    batch_stats = nn.functional.batch_norm(model[0](x), None, None, model[1].weight, model[1].bias, training=True)
    assert (compiled(x.numpy()) - batch_stats.detach().numpy()).__abs__().max() > 1e-2
    assert_matches_eager(model, compiled, x)


class Extrema(nn.Module):
    """aten.amax / aten.amin (no converter in TVM 0.27's frontend): one dim, several, all, keepdim."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.amax(dim=2), x.amin(dim=(1, 2), keepdim=True), torch.amax(x, dim=-1), x.amin()


def test_amax_and_amin_match_eager(compile_cpu) -> None:
    x = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    assert_matches_eager(Extrema(), compile_cpu(Extrema(), x), x)


class MaxOverTime(nn.Module):
    """``x.max(dim)`` / ``x.min(dim)`` with their indices (the frontend's topk of k=1 did not schedule)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values, indices = F.relu(x).max(dim=2)
        low, where = x.min(dim=1, keepdim=True)
        return values, indices, low, where


def test_max_and_min_over_a_dim_give_values_and_indices(compile_cpu) -> None:
    x = torch.randn(2, 6, 11, generator=torch.Generator().manual_seed(0))  # continuous: no ties
    compiled = compile_cpu(MaxOverTime(), x)
    assert_matches_eager(MaxOverTime(), compiled, x)
    _, indices, _, where = compiled(x.numpy())
    assert indices.dtype.name == "int64" and where.shape == (2, 1, 11)


class PositionIds(nn.Module):
    """Hugging Face RoBERTa's position ids: a cumsum over a mask of padding tokens, plus a float cumsum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x > 0).int()
        return (torch.cumsum(mask, dim=1) * mask).float() + x.cumsum(dim=1)


def test_cumsum_with_other_ops_is_legalized_and_matches(compile_cpu) -> None:
    """TVM's library dispatch makes a PrimFunc of cumsum before the schedule step; the step took that
    PrimFunc for "already legalized" and left ``R.greater`` for the VM, which cannot run it."""
    x = torch.randn(2, 9, generator=torch.Generator().manual_seed(0))
    assert_matches_eager(PositionIds(), compile_cpu(PositionIds(), x), x)


class Hyperbolic(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cosh(x), torch.sinh(x)


def test_cosh_and_sinh_keep_their_relative_precision(compile_cpu) -> None:
    """TVM's LLVM backend has no cosh/sinh intrinsic (the build failed); the exp forms replacing them
    keep float32 precision relative to each value, small ``x`` (where e^x - e^-x cancels) included."""
    x = torch.tensor([1e-6, -1e-4, 1e-3, 0.3, -0.49, 0.5, 0.51, 2.0, -7.0, 0.0])
    cosh, sinh = compile_cpu(Hyperbolic(), x)(x.numpy())
    exact = x.double().numpy()
    np.testing.assert_allclose(cosh, np.cosh(exact), rtol=1e-6)
    np.testing.assert_allclose(sinh, np.sinh(exact), rtol=1e-6, atol=0)


class Exponentials(nn.Module):
    """SELU decomposes to ``elu(x, alpha, scale=1.0507)``, whose ``scale`` TVM's frontend dropped (5% off)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return F.selu(x), F.elu(x, alpha=0.7), F.celu(x, alpha=2.0)


def test_selu_elu_and_celu_keep_their_scale_and_alpha(compile_cpu) -> None:
    x = torch.linspace(-4, 4, 33)
    got = compile_cpu(Exponentials(), x)(x.numpy())
    for mine, eager in zip(got, Exponentials()(x), strict=True):
        np.testing.assert_allclose(mine, eager.numpy(), rtol=1e-6, atol=1e-6)


class BitViews(nn.Module):
    """ONNX BitCast: the same bits read as another type of the same width."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.view(torch.int32), mask.view(torch.uint8)


def test_bit_views_of_the_same_width_keep_the_bits(compile_cpu) -> None:
    x = torch.tensor([1.0, -2.5, 0.0, float("inf"), 3e-39])
    mask = torch.tensor([True, False, True, True, False])
    bits, bytes_ = compile_cpu(BitViews(), x, mask)(x.numpy(), mask.numpy())
    np.testing.assert_array_equal(bits, x.numpy().view(np.int32))
    np.testing.assert_array_equal(bytes_, np.array([1, 0, 1, 1, 0], dtype=np.uint8))


class Windows(nn.Module):
    """``unfold`` (graphopt's ONNX pools take windows this way), an integer ``prod`` over a dim (torch
    makes it int64), bit shifts and a stable sort with ties (ONNX TopK's order)."""

    def forward(self, x: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maxima, sums = x.unfold(2, 3, 2).amax(dim=-1), x.unfold(1, 2, 1).sum(dim=-1)
        product = n.prod(dim=1)
        shifted = torch.bitwise_left_shift(n, 2) + torch.bitwise_right_shift(n, 1)
        values, indices = torch.sort(n.float(), dim=1, descending=True, stable=True)
        return maxima, sums, product, shifted, values, indices


def test_unfold_prod_shifts_and_stable_sort_match_eager(compile_cpu) -> None:
    x = torch.randn(2, 3, 9, generator=torch.Generator().manual_seed(0))
    n = torch.randint(0, 3, (2, 7), generator=torch.Generator().manual_seed(1), dtype=torch.int32)  # ties
    got = compile_cpu(Windows(), x, n)(x.numpy(), n.numpy())
    for mine, eager in zip(got, Windows()(x, n), strict=True):
        assert mine.dtype == eager.numpy().dtype
        np.testing.assert_allclose(mine, eager.numpy(), rtol=1e-6, atol=1e-6)


class Scale(nn.Module):
    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return x * s


def test_a_scalar_input_stays_zero_dimensional(compile_cpu) -> None:
    """``np.ascontiguousarray`` makes a 0-d array 1-d; the VM refused it ("expect Tensor with ndim 0")."""
    x, s = torch.randn(3), torch.tensor(2.5)
    compiled = compile_cpu(Scale(), x, s)
    np.testing.assert_allclose(compiled(x.numpy(), s.numpy()), (x * 2.5).numpy(), rtol=1e-6)
    np.testing.assert_allclose(compiled(x, s), (x * 2.5).numpy(), rtol=1e-6)


class GridSample(nn.Module):
    def forward(self, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def test_grid_sample_keeps_the_grid_layout(compile_cpu) -> None:
    """torch's grid is (N, H_out, W_out, 2); the frontend handed it to an op that reads (N, 2, H_out, W_out)
    and gave a (N, C, W_out, 2) output."""
    x = torch.randn(2, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    grid = torch.rand(2, 4, 7, 2, generator=torch.Generator().manual_seed(1)) * 2.2 - 1.1
    got = compile_cpu(GridSample(), x, grid)(x.numpy(), grid.numpy())
    assert got.shape == (2, 3, 4, 7)
    np.testing.assert_allclose(got, GridSample()(x, grid).numpy(), rtol=1e-5, atol=1e-5)


class BFloat16(nn.Module):
    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.to(torch.bfloat16) * 2, h.float() + 1


def test_bfloat16_inputs_and_outputs(compile_cpu) -> None:
    """numpy has no bfloat16: a torch bfloat16 input went through ``.numpy()`` (TypeError) and a bfloat16
    output through numpy's DLPack import ("Unsupported dtype"); both now use ml_dtypes' bfloat16."""
    x, h = torch.randn(4, 3), torch.randn(4, 3).to(torch.bfloat16)
    doubled, widened = compile_cpu(BFloat16(), x, h)(x, h)
    expected = BFloat16()(x, h)
    assert doubled.dtype.name == "bfloat16"
    np.testing.assert_array_equal(doubled.astype(np.float32), expected[0].float().numpy())
    np.testing.assert_array_equal(widened, expected[1].numpy())


class ScatterReduce(nn.Module):
    def forward(self, x: torch.Tensor, src: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(x.scatter_reduce(1, index, src, reduce=r) for r in ("sum", "prod", "amax", "amin"))


def test_scatter_reduce_with_repeated_indices(compile_cpu) -> None:
    """ONNX ScatterND / ScatterElements with a reduction: every update meets the value already there."""
    x, src = torch.randn(3, 5), torch.randn(3, 4)
    index = torch.tensor([[0, 0, 4, 2], [1, 3, 3, 3], [4, 4, 4, 4]])
    got = compile_cpu(ScatterReduce(), x, src, index)(x.numpy(), src.numpy(), index.numpy())
    for mine, eager in zip(got, ScatterReduce()(x, src, index), strict=True):
        np.testing.assert_allclose(mine, eager.numpy(), rtol=1e-6, atol=1e-6)


class BoolReductions(nn.Module):
    """ONNX ReduceMax/ReduceMin of a bool tensor: any/all along a dim."""

    def forward(self, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (
            mask.amax(dim=1),
            mask.amin(dim=0, keepdim=True),
            mask.max(dim=1, keepdim=True).values,
            mask.min(dim=0)[0],
        )


def test_max_and_min_of_bools_build_and_stay_bool(compile_cpu) -> None:
    mask = torch.tensor([[True, False, True], [False, False, True]])
    got = compile_cpu(BoolReductions(), mask)(mask.numpy())
    for mine, eager in zip(got, BoolReductions()(mask), strict=True):
        assert mine.dtype == np.bool_
        np.testing.assert_array_equal(mine, eager.numpy())


class Determinant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(x)


@pytest.mark.parametrize("shape", [(2, 2), (3, 3, 3), (2, 4, 4)])
def test_determinants_of_small_matrices_match_eager(compile_cpu, shape) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    got = compile_cpu(Determinant(), x)(x.numpy())
    np.testing.assert_allclose(got, torch.linalg.det(x.double()).numpy(), rtol=1e-5, atol=1e-5)
