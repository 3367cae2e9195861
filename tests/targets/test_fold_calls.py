"""FoldConstantCalls: the weight transforms folded with one LLVM build, to the same constants."""

from __future__ import annotations

import pytest
import torch
import tvm
from torch import nn

import graphopt
from graphopt.targets.cpu import schedule
from graphopt.targets.lowering.lower import lower_to_relax


class Blocks(nn.Module):
    """Three conv + BN + ReLU blocks of one shape and a grouped conv: weight transforms to fold."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(
            *[nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()) for _ in range(3)]
        )
        self.grouped = nn.Conv2d(16, 32, 3, groups=4)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        y = self.grouped(self.blocks(self.stem(x)))
        return self.head(y.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def relax_module():
    torch.manual_seed(0)
    model = Blocks().eval()
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):  # not the identity statistics: the folded scale is real arithmetic
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    graph = graphopt.capture(model, torch.randn(1, 3, 12, 12))
    mod, _ = lower_to_relax(graph)
    return mod


def _prepare_counting_builds(mod, monkeypatch, *, batched: bool):
    """``prepare_cpu_module`` with every ``tirx.build`` counted (FoldConstant's and ours)."""
    builds = []
    real_build = tvm.get_global_func("tirx.build")

    def counting_build(mod, target=None, *rest):
        builds.append(mod)
        return real_build(mod, target, *rest)

    if not batched:
        monkeypatch.setattr(schedule, "FoldConstantCalls", lambda: tvm.transform.Sequential([]))
    tvm.register_global_func("tirx.build", counting_build, override=True)
    monkeypatch.setattr(tvm.tirx, "build", counting_build)
    try:
        prepared = schedule.prepare_cpu_module(mod, schedule.host_target(2))
    finally:
        tvm.register_global_func("tirx.build", real_build, override=True)
        monkeypatch.undo()
    return prepared, builds


def test_the_weight_transforms_build_once_and_fold_to_the_same_constants(relax_module, monkeypatch):
    folded_once, builds = _prepare_counting_builds(relax_module, monkeypatch, batched=True)
    folded_each, builds_each = _prepare_counting_builds(relax_module, monkeypatch, batched=False)
    # FoldConstant alone builds once per call (its cache is keyed by the PrimFunc with a symbol added
    # after the lookup, so it never hits): here once per weight and per BN statistic
    assert len(builds_each) > 40
    assert len(builds) == 1 and isinstance(builds[0], tvm.IRModule)  # all of them in one module, nothing left
    assert len(builds[0].functions) < 20  # each distinct PrimFunc once: the three blocks share theirs
    tvm.ir.assert_structural_equal(folded_once, folded_each, map_free_vars=True)  # constants' bytes included


def test_a_module_with_nothing_to_fold_is_returned_as_is():
    from graphopt.targets.lowering.fold_calls import FoldConstantCalls

    mod = tvm.IRModule()
    assert FoldConstantCalls()(mod).same_as(mod)
