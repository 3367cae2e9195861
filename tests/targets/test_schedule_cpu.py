"""The default CPU schedules: every rule keeps eager's numbers, and they make the code fast.

Numerics: relative error ≤ 1e-5 against eager (TOLERANCE in conftest.py: float32 with a reordered
K-term sum is off by ~sqrt(K)·6e-8; GELU and softmax go through TOPI's fast_erf/fast_exp, whose
float32 error is ~1e-7 relative). Structure: each workload's fused function was matched by the
rule meant for it, and that rule produced parallel, vectorized loops.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import tvm
from torch import nn
from tvm import relax, s_tir
from tvm.relax.frontend.torch import from_exported_program
from tvm.s_tir import dlight
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline_contiguous_spatial

from graphopt.targets.cpu.schedule import default_rules, host_target, prepare_cpu_module, schedule_cpu
from graphopt.targets.cpu.schedule_simple import Injective, inline_spatial, is_reduction_block
from graphopt.targets.cpu.schedule_tiled import TiledContraction, choose_tiles
from tests.targets.conftest import TOLERANCE, randomize

TARGET = host_target()


def to_relax(model: nn.Module, *inputs: torch.Tensor) -> tvm.IRModule:
    program = torch.export.export(model.eval(), inputs).run_decompositions()
    return from_exported_program(program, keep_params_as_input=False)


def run(mod: tvm.IRModule, *inputs: torch.Tensor):
    vm = relax.VirtualMachine(tvm.compile(mod, TARGET), tvm.cpu())
    return vm, [tvm.runtime.tensor(t.numpy()) for t in inputs]


def output(vm, args) -> np.ndarray:
    out = vm["main"](*args)
    return (out[0] if not hasattr(out, "numpy") else out).numpy()


def relative_error(expected: torch.Tensor, actual: np.ndarray) -> float:
    reference = expected.numpy()
    return float(np.abs(reference - actual).max() / np.abs(reference).max())


def rule_matching(func: tvm.tirx.PrimFunc):
    for rule in (TiledContraction(), dlight.cpu.Reduction(), Injective()):
        if rule.apply(func, TARGET, False) is not None:
            return type(rule).__name__
    return None


class Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(96, 80)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


class ConvBN(nn.Module):
    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 32 if groups == 1 else 16, 3, padding=1, groups=groups)
        self.bn = nn.BatchNorm2d(self.conv.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Pointwise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 48, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BatchMatmul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x * 3.0, dim=-1)


class MaxPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(x, 3, stride=2, padding=1)


class GlobalAvgPool(nn.Module):
    """After a conv, as in every CNN head: the pool then runs in the conv's NHWC layout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.conv(x), 1).flatten(1)


class GeluFFN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(64)
        self.up = nn.Linear(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.up(self.norm(x)))


class MeanOverUnitAxis(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=-1, keepdim=True) * 3.0 + 0.5


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


WORKLOADS = {
    "dense": (Dense(), (rand(8, 96),), "TiledContraction"),
    "conv3x3_bn_relu": (ConvBN(), (rand(2, 16, 14, 14),), "TiledContraction"),
    "depthwise": (ConvBN(groups=16), (rand(1, 16, 14, 14),), "TiledContraction"),
    "depthwise_1x1_bn_relu": (
        nn.Sequential(nn.Conv2d(16, 16, 1, groups=16), nn.BatchNorm2d(16), nn.ReLU()),
        (rand(1, 16, 10, 10),),
        "TiledContraction",
    ),
    "dense_k1": (nn.Linear(1, 40), (rand(8, 1),), "TiledContraction"),
    "conv1x1": (Pointwise(), (rand(1, 16, 10, 10),), "TiledContraction"),
    "batch_matmul": (BatchMatmul(), (rand(4, 24, 40), rand(4, 40, 32, seed=1)), "TiledContraction"),
    "maxpool": (MaxPool(), (rand(1, 16, 14, 14),), "TiledContraction"),
    "global_avgpool": (GlobalAvgPool(), (rand(2, 8, 7, 7),), "TiledContraction"),
    # Row counts with no divisor of at least 4 (ViT's 197 tokens; output widths of 17 and 19): full row
    # tiles and one ragged last tile, epilogues included.
    "dense_ragged_rows": (Dense(), (rand(1, 197, 96),), "TiledContraction"),
    "conv_ragged_rows": (ConvBN(), (rand(1, 16, 17, 17),), "TiledContraction"),
    "depthwise_ragged_rows": (ConvBN(groups=16), (rand(1, 16, 19, 19),), "TiledContraction"),
    "maxpool_ragged_rows": (MaxPool(), (rand(1, 16, 33, 33),), "TiledContraction"),
    "softmax": (Softmax(), (rand(4, 16, 50),), "Reduction"),
    "layernorm_gelu": (GeluFFN(), (rand(1, 12, 64),), "Reduction"),
}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_rule_matches_eager(name: str) -> None:
    model, inputs, _ = WORKLOADS[name]
    model = randomize(model)
    with torch.no_grad():
        expected = model(*inputs)
    vm, args = run(schedule_cpu(to_relax(model, *inputs), TARGET), *inputs)
    assert relative_error(expected, output(vm, args)) <= TOLERANCE


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_gets_its_rule(name: str) -> None:
    model, inputs, rule = WORKLOADS[name]
    fused = prepare_cpu_module(to_relax(randomize(model), *inputs), TARGET)
    rules = {rule_matching(f) for _, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert rule in rules


def test_every_function_scheduled_with_parallel_vector_loops() -> None:
    model, inputs, _ = WORKLOADS["conv3x3_bn_relu"]
    scheduled = schedule_cpu(to_relax(randomize(model), *inputs), TARGET)
    functions = [f for _, f in scheduled.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert functions and all(f.attrs["tirx.is_scheduled"] for f in functions)
    conv = next(f for f in functions if "conv2d" in f.script())
    assert "T.parallel" in conv.script() and "T.vectorized" in conv.script()


# Reductions over a unit-extent domain followed by an epilogue. normalize_prim_func drops unit loops,
# reduction ones included, so their reduction block looks all-spatial but keeps its T.init(); an
# epilogue reverse-inlined into it is applied in the init and again in the update (bias added twice).
UNIT_REDUCTIONS = {
    "depthwise_1x1_bias": (nn.Conv2d(4, 4, 1, groups=4), rand(2, 4, 9, 9)),
    "depthwise_1x1_multiplier_bias": (nn.Conv2d(4, 8, 1, groups=4), rand(2, 4, 9, 9)),
    "dense_k1_bias": (nn.Linear(1, 8), rand(3, 1)),
    "mean_over_unit_axis": (MeanOverUnitAxis(), rand(3, 5, 1)),
}


def fused_reductions(model: nn.Module, *inputs: torch.Tensor) -> list[tvm.tirx.PrimFunc]:
    fused = prepare_cpu_module(to_relax(randomize(model), *inputs), TARGET)
    return [f for _, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and "T.init()" in f.script()]


def run_prim_func(func: tvm.tirx.PrimFunc, arrays: list[np.ndarray]) -> np.ndarray:
    """Build one PrimFunc on its own and run it; the last argument is the output."""
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), TARGET)
    args = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*args)
    return args[-1].numpy()


@pytest.mark.parametrize("name", list(UNIT_REDUCTIONS))
def test_every_rule_keeps_unit_reductions_with_epilogues(name: str) -> None:
    """Each rule on its own (not just the first that matches) computes what the unscheduled function does."""
    model, x = UNIT_REDUCTIONS[name]
    functions = fused_reductions(model, x)
    assert functions
    generator = np.random.default_rng(0)
    for func in functions:
        arrays = [generator.standard_normal([int(d) for d in p.shape]).astype("float32") for p in func.params]
        expected = run_prim_func(func, [a.copy() for a in arrays])
        matched = []
        for rule in default_rules():
            sch = rule.apply(func, TARGET, False)
            if sch is None:
                continue
            matched.append(type(rule).__name__)
            actual = run_prim_func(sch.mod["main"], [a.copy() for a in arrays])
            np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6, err_msg=f"{type(rule).__name__}")
        assert "Injective" not in matched, "a function with a reduction block is not injective"


def test_unit_reduction_epilogue_is_not_inlined_into_the_init() -> None:
    """The exact cause: a depthwise 1x1 conv is reported all-spatial with an init; dlight's inlining
    (TVM 0.27) then puts the bias into the init as well as the update; ``inline_spatial`` does not."""
    (func,) = fused_reductions(nn.Conv2d(4, 4, 1, groups=4), rand(2, 4, 9, 9))

    def conv_and_rest(inline):
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        conv = next(info for info in infos if "conv2d" in info.name)
        assert conv.dom_kind() == "SSSS" and is_reduction_block(sch, conv)
        remaining = inline(sch, infos)
        return sch, conv, remaining

    sch, conv, remaining = conv_and_rest(inline_spatial)
    assert [info.name for info in remaining] == [conv.name, "T_add"]
    assert isinstance(sch.get(conv.block_rv).init.value, tvm.tirx.FloatImm)  # still 0.0

    # What the workaround is for; if TVM stops doing this, dlight's helper is safe to use again.
    sch, conv, remaining = conv_and_rest(try_inline_contiguous_spatial)
    assert len(remaining) == 1
    assert not isinstance(sch.get(remaining[0].block_rv).init.value, tvm.tirx.FloatImm)  # 0.0 + bias


def _weight_shapes(mod: tvm.IRModule, name: str, dims: int = 5) -> list[tuple[int, ...]]:
    """Shapes of the ``dims``-d parameters of the fused function(s) whose name contains ``name``."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    return [
        tuple(int(d) for d in arg.shape)
        for gvar, func in mod.functions_items()
        if isinstance(func, tvm.tirx.PrimFunc) and name in gvar.name_hint
        for arg in ArgInfo.from_prim_func(func)
        if len(arg.shape) == dims
    ]


def test_float_convs_read_weights_packed_per_tile_at_compile_time() -> None:
    # 16 -> 32 channels, 3x3: one tile of 32 output channels, so W[3, 3, 16, 32] becomes
    # Wp[1, 3, 3, 16, 32]; the packing ran at compile time (no function left that packs).
    mod = prepare_cpu_module(to_relax(ConvBN(), rand(2, 16, 14, 14)), TARGET)
    assert _weight_shapes(mod, "conv2d") == [(1, 3, 3, 16, 32)]
    assert not [g for g, _ in mod.functions_items() if "pack_conv_weight" in g.name_hint]
    # A depthwise conv has no channel reduction to tile: TVM's own legalization, HWIO weights.
    depthwise = prepare_cpu_module(to_relax(ConvBN(groups=16), rand(1, 16, 14, 14)), TARGET)
    assert _weight_shapes(depthwise, "conv2d") == []


class ByWeight(nn.Module):
    """``x @ W`` with a ``[K, N]`` weight: what a Linear is after O2's pretranspose_weights."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(96, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def test_float_matmuls_by_constant_weights_read_them_packed_per_tile() -> None:
    # 64 outputs at batch 8 are two tiles of 32: W[96, 64] becomes Wp[2, 96, 32], at compile time.
    model, x = ByWeight().eval(), rand(8, 96)
    mod = prepare_cpu_module(to_relax(model, x), TARGET)
    assert _weight_shapes(mod, "matmul", dims=3) == [(2, 96, 32)]
    vm, args = run(schedule_cpu(mod, TARGET), x)
    assert relative_error(model(x).detach(), output(vm, args)) <= TOLERANCE


def test_tiles_fit_registers_and_divide_the_axes() -> None:
    # AVX-512: 16 fp32 lanes; a 64x256 matmul gets 8 rows x 2 vectors = 16 accumulators.
    assert choose_tiles(64, 256, 16, reduction=784) == (8, 2, 16)
    # A 1x1 conv over 16 channels: the tile stays under 1 KiB so it is stack-allocated.
    ii, nj, vw = choose_tiles(112, 96, 16, reduction=16)
    assert 112 % ii == 0 and 96 % (nj * vw) == 0 and ii * nj * vw * 4 < 1024
    # 24 channels are three whole 8-lane vectors, never one ragged vector of 24.
    assert choose_tiles(3136, 24, 16, reduction=144) == (8, 3, 8)
    # 10 classes: the whole (short) axis is one vector tile.
    assert choose_tiles(1, 10, 16, reduction=128) == (1, 1, 10)
    # 197 rows (a prime): 8-row tiles and a ragged last one, rather than 197 tiles of one row.
    assert choose_tiles(197, 3072, 16, reduction=768) == (8, 2, 16)
    # ... unless the columns are ragged too (197 x 197 attention scores): one row per tile, as before.
    assert choose_tiles(197, 197, 16, reduction=64)[0] == 1


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def test_scheduled_mlp_is_much_faster_than_unscheduled() -> None:
    """An honest check that the schedules did something: same model, same run, interleaved."""
    from samples.mnist_mlp import mnist_mlp

    model = mnist_mlp(pretrained=False).eval()
    x = rand(64, 784)
    mod = to_relax(model, x)
    fast, args = run(schedule_cpu(mod, TARGET), x)
    slow, _ = run(mod, x)
    with torch.no_grad():
        assert relative_error(model(x), output(fast, args)) <= TOLERANCE
    ratios = []
    for _ in range(3):
        slow_ms = median_ms(lambda: slow["main"](*args), 3)
        fast_ms = median_ms(lambda: fast["main"](*args), 15)
        ratios.append(slow_ms / fast_ms)
    # Measured ~100x here (0.15 ms vs 17 ms); 3x leaves room for a noisy shared machine.
    assert np.median(ratios) > 3.0, f"scheduled/unscheduled speedups {ratios}"


def test_dot_product_rule_declines_prim_funcs_without_a_root_block() -> None:
    """TOPI's ir_builder kernels (cumsum) are one opaque block, no "root": the rule asked for one
    (ScheduleError in get-block, hf_roberta_classifier) instead of declining."""
    from tvm import topi

    from graphopt.targets.cpu.dot_product import DotProductRule, has_root_block

    class Everywhere(DotProductRule):
        def available(self, target: tvm.target.Target) -> bool:
            return True

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 7), "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(bb.call_te(topi.cumsum, x, axis=1, primfunc_name_hint="cumsum"))
    scan = bb.get()["cumsum"]
    assert not has_root_block(scan)
    assert Everywhere().apply(scan, TARGET, False) is None
    matmul = prepare_cpu_module(to_relax(nn.Linear(8, 4), torch.randn(2, 8)), TARGET)
    assert all(has_root_block(f) for _, f in matmul.functions_items() if isinstance(f, tvm.tirx.PrimFunc))
