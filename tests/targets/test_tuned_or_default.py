"""A tuned build is kept only if the whole model runs faster with it (targets/cpu/tuned_or_default.py):
MetaSchedule times each kernel alone, and EfficientNet-B0's 7 kernels that won there made the model
2-6% slower. Here the "tuned" module is made slow on purpose (every kernel on the parallel fallback
rule: no register tiles, no vectors), so the verdict is certain, not a timing coin flip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import tvm
from torch import nn
from tvm import relax
from tvm.s_tir import dlight

import graphopt
from graphopt.targets.cpu.schedule import host_target, prepare_cpu_module, schedule_cpu
from graphopt.targets.cpu.schedule_simple import ParallelFallback
from graphopt.targets.cpu.tuned_or_default import static_inputs, tuned_or_default
from tests.targets.test_schedule_cpu import rand, to_relax

TARGET = host_target()


def conv_model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1)).eval(), rand(
        1, 16, 28, 28
    )


def both_builds() -> tuple[tvm.IRModule, tvm.IRModule]:
    """(the default schedules, a naive schedule of the same kernels)."""
    model, x = conv_model()
    with TARGET:  # each from its own module: ApplyDefaultSchedule updates the module it is given
        naive = dlight.ApplyDefaultSchedule(ParallelFallback())(prepare_cpu_module(to_relax(model, x), TARGET))
    return schedule_cpu(prepare_cpu_module(to_relax(model, x), TARGET), TARGET), naive


def test_a_slower_tuned_build_gives_way_to_the_defaults() -> None:
    default, naive = both_builds()
    outcome: dict = {}
    assert tuned_or_default(naive, default, TARGET, outcome) is default
    assert outcome["kept"] == "default" and outcome["tuned_ms"] > outcome["default_ms"]


def test_a_faster_tuned_build_is_kept() -> None:
    default, naive = both_builds()
    outcome: dict = {}
    assert tuned_or_default(default, naive, TARGET, outcome) is default  # here the "tuned" one is fast
    assert outcome["kept"] == "tuned" and outcome["tuned_ms"] < outcome["default_ms"]


def test_identical_builds_are_not_timed() -> None:
    default, _ = both_builds()
    outcome: dict = {}
    assert tuned_or_default(default, default, TARGET, outcome) is default
    assert outcome == {"kept": "default", "reason": "every kernel's best record is its default schedule"}


def test_inputs_for_the_timing_run_follow_main() -> None:
    model, x = conv_model()
    (tensor,) = static_inputs(to_relax(model, x))
    assert tensor.shape == (1, 16, 28, 28) and tensor.dtype == "float32"
    n = tvm.tirx.Var("n", "int64")
    x_var = relax.Var("x", relax.TensorType([n, 4], "float32"))
    builder = relax.BlockBuilder()
    with builder.function("main", [x_var]):
        builder.emit_func_output(x_var)
    assert static_inputs(builder.get()) is None  # a dynamic batch: no timing run, the tuned build stays


def test_the_manifest_says_which_build_was_kept(tmp_path: Path) -> None:
    model, x = conv_model()
    compiled = graphopt.compile(model, x, target="cpu", tune=True, tune_trials=1, tune_db=tmp_path / "db")
    tuning = compiled.manifest.build["tuning"]
    assert tuning["kept"] in ("tuned", "default")
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x.numpy()), model(x).numpy(), rtol=1e-4, atol=1e-4)
