"""Two int8 fast paths of the CPU target, each computing exactly what the int8 graph computes.

* A depthwise (or grouped) int8 conv sums few products, so its int32 sum is exact in float32 and it
  runs on the float depthwise kernels (targets/lowering/quantized.py, ``EXACT_FLOAT_TERMS``).
* The requantization after an int8 conv or matmul (zero point, scales, bias, ReLU, round, clamp)
  is inlined into one loop over each output tile (targets/cpu/dot_product.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn

import graphopt
from graphopt.targets.cpu.schedule import host_target, schedule_cpu
from graphopt.targets.cpu.vnni import has_vnni
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import TOLERANCE


def _block(channels: int = 32) -> nn.Module:
    """An inverted-residual core: pointwise up, depthwise 3x3, pointwise down."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(8, channels, 1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        nn.ReLU(),
        nn.Conv2d(channels, 8, 1),
    ).eval()


def _quantized(x: torch.Tensor) -> graphopt.Graph:
    calibration = torch.randn(32, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    quantized, _ = graphopt.quantize(graphopt.capture(_block(), x), calibration)
    return quantized


def _convs(mod: tvm.IRModule) -> list[tuple[int, str]]:
    found = []

    def visit(expr):
        if isinstance(expr, tvm.relax.Call) and getattr(expr.op, "name", "") == "relax.nn.conv2d":
            found.append((int(expr.attrs.groups), str(expr.attrs.out_dtype)))

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    return found


def test_the_depthwise_int8_conv_accumulates_in_float_and_matches_the_graph():
    x = torch.randn(2, 8, 12, 12, generator=torch.Generator().manual_seed(0))
    x[0, :, 0, 0] = 40.0  # activations at the top of their int8 range: the largest products
    quantized = _quantized(x)
    mod, _ = lower_to_relax(quantized)
    assert sorted(_convs(mod)) == [(1, "int32"), (1, "int32"), (32, "float32")]
    compiled = graphopt.compile(quantized, x, target="cpu", passes="O0")
    with torch.no_grad():
        expected = quantized(x).numpy()
    error = np.abs(compiled(x.numpy()) - expected).max() / np.abs(expected).max()
    assert error <= TOLERANCE  # the same integer sums: only the float epilogue's rounding differs


@pytest.mark.skipif(not has_vnni(host_target()), reason="no AVX-512 VNNI: the int8 convs are no dot-product kernels")
def test_the_requantization_after_an_int8_conv_is_one_loop():
    x = torch.randn(2, 8, 12, 12, generator=torch.Generator().manual_seed(0))
    mod, _ = lower_to_relax(_quantized(x))
    scheduled = schedule_cpu(mod, host_target())
    dense = [f for g, f in scheduled.functions_items() if g.name_hint.startswith("fused_int8_dense")]
    assert dense
    for func in dense:
        blocks = func.script().count("with T.sblock(")
        # root, the accumulator's init and update, and one epilogue (12 separate blocks before)
        assert blocks <= 4, func.script()
