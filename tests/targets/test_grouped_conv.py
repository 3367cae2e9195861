"""Grouped convolutions (1 < groups < channels) on the CPU's packed-weight path.

Numerics: relative error <= 1e-5 against torch eager (TOLERANCE, tests/targets/conftest.py): each
output is a ``KH*KW*CI_g``-term float32 dot product summed in another order than PyTorch's, off by
~sqrt(K)*6e-8 relative; a wrong group (reading another group's channels) is off by O(1).
Structure: the conv reads weights packed per tile of one group's output channels, at compile time,
and its block carries the group count the schedule tiles by; with the path off (TVM's own grouped
legalization) both checks fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax
from tvm.relax.frontend.torch import from_exported_program
from tvm.s_tir.meta_schedule.arg_info import ArgInfo

from graphopt.targets.cpu.schedule import host_target, prepare_cpu_module, schedule_cpu
from graphopt.targets.cpu.schedule_tiled import GROUPS_ATTR
from tests.targets.conftest import TOLERANCE

TARGET = host_target()

# (batch, in, out, groups, kernel, stride, padding, height): groups 2/4/8, strides 1/2, with and
# without padding, batch 1 and > 1, the horizontally fused ensemble's conv (16 -> 32 per group) and
# RegNet's group width of 8 channels.
SHAPES = {
    "g2_s1_pad1_b1": (1, 16, 32, 2, 3, 1, 1, 10),
    "g4_s2_pad1_b3": (3, 32, 64, 4, 3, 2, 1, 11),
    "g8_s1_pad0_b2": (2, 64, 64, 8, 3, 1, 0, 9),
    "g4_ensemble_b2": (2, 64, 128, 4, 3, 1, 1, 14),
    "g6_regnet_width8_b1": (1, 48, 48, 6, 3, 2, 1, 12),
    "g2_1x1_b2": (2, 32, 16, 2, 1, 1, 0, 7),
}


def _model(batch: int, cin: int, cout: int, groups: int, k: int, stride: int, pad: int, size: int):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=True)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(cout))  # nonzero, so a dropped bias shows
    model = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.randn(batch, cin, size, size, generator=torch.Generator().manual_seed(1))
    return model, x


def _prepared(model: nn.Module, x: torch.Tensor) -> tvm.IRModule:
    program = torch.export.export(model, (x,)).run_decompositions()
    return prepare_cpu_module(from_exported_program(program, keep_params_as_input=False), TARGET)


def _conv_functions(mod: tvm.IRModule) -> list[tvm.tirx.PrimFunc]:
    return [f for g, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in g.name_hint]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_grouped_conv_matches_eager_on_packed_weights(name: str) -> None:
    _, cin, cout, groups, k, *_ = SHAPES[name]
    model, x = _model(*SHAPES[name])
    mod = _prepared(model, x)
    (conv,) = _conv_functions(mod)
    # Weights packed at compile time to [CO/B, KH, KW, CI_g, B], B dividing one group's outputs.
    weights = [tuple(int(d) for d in a.shape) for a in ArgInfo.from_prim_func(conv) if len(a.shape) == 5]
    assert len(weights) == 1, weights
    tiles, kh, kw, cin_g, width = weights[0]
    assert (kh, kw, cin_g, tiles * width) == (k, k, cin // groups, cout)
    assert (cout // groups) % width == 0
    assert not [g for g, _ in mod.functions_items() if "pack_conv_weight" in g.name_hint]
    # The schedule tiles by group: the conv block carries the group count.
    assert f'"{GROUPS_ATTR}": {groups}' in conv.script()

    vm = relax.VirtualMachine(tvm.compile(schedule_cpu(mod, TARGET), TARGET), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    got = (out[0] if not hasattr(out, "numpy") else out).numpy()
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape
    assert float(np.abs(got - want).max() / np.abs(want).max()) <= TOLERANCE


def test_depthwise_keeps_tvm_legalization() -> None:
    # groups == channels: no channel reduction to tile, so no packed weights (TiledContraction
    # schedules TVM's depthwise conv directly).
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16)).eval()
    mod = _prepared(model, torch.randn(1, 16, 8, 8))
    (conv,) = _conv_functions(mod)
    assert not [a for a in ArgInfo.from_prim_func(conv) if len(a.shape) == 5]
