"""Default CPU schedules for what third-party networks spend time in (benchmarks/third_party.py):
activation epilogues fused into their conv, and the kernels of those networks.

Each test asserts on the scheduled or prepared TIR (the fast path was taken), never on timing, and
checks the numbers against eager: relative error <= TOLERANCE (1e-5, conftest.py); TOPI's fast_exp
has ~1e-7 relative error in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from torch import nn

from graphopt.targets.cpu.schedule import prepare_cpu_module, schedule_cpu
from tests.targets.conftest import TOLERANCE, randomize
from tests.targets.test_schedule_cpu import TARGET, output, rand, relative_error, rule_matching, run, to_relax


def _conv_functions(mod: tvm.IRModule) -> list[tvm.tirx.PrimFunc]:
    return [f for g, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in g.name_hint]


@pytest.mark.parametrize("act", [nn.SiLU, nn.Sigmoid], ids=["silu", "sigmoid"])
def test_sigmoid_epilogue_is_vectorizable_and_matches_eager(act: type) -> None:
    # tir.sigmoid lowers to a scalar expf call per lane: a 1x1 conv with a SiLU epilogue ran ~10x
    # slower than with ReLU. The fused conv must compute it with TOPI's polynomial fast_exp.
    model, x = randomize(nn.Sequential(nn.Conv2d(8, 32, 1), act())).eval(), rand(1, 8, 6, 6)
    prepared = prepare_cpu_module(to_relax(model, x), TARGET)
    (conv,) = _conv_functions(prepared)
    script = conv.script()
    assert "T.sigmoid" not in script and "T.exp(" not in script
    assert rule_matching(conv) == "TiledContraction"
    with torch.no_grad():
        expected = model(x)
    vm, args = run(schedule_cpu(prepared, TARGET), x)
    assert relative_error(expected, output(vm, args)) <= TOLERANCE


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) + nn.functional.silu(x)


def test_fast_sigmoid_saturates_without_nan_at_extreme_inputs() -> None:
    # fast_exp clamps its argument to +-88.38: sigmoid(-200) is ~0 (not NaN), sigmoid(200) is 1.
    x = torch.linspace(-200.0, 200.0, 4001).reshape(1, 4001)
    vm, args = run(schedule_cpu(to_relax(Gate(), x), TARGET), x)
    actual = output(vm, args)
    assert np.isfinite(actual).all()
    np.testing.assert_allclose(actual, Gate()(x).numpy(), rtol=1e-5, atol=1e-6)
