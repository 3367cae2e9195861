"""Integer kernels on packed weights (targets/cpu/int8_kernels.py, targets/cpu/vnni.py): exact int32 results.

An int8 x int8 -> int32 matmul or convolution has one right answer, so these compare with the
integer reference exactly (no tolerance): any mistake in packing, padding, the +128 shift of int8
activations or the VNNI tiling changes some element. On a CPU with AVX-512 VNNI the kernels must
also be the ``vpdpbusd`` ones (checked in the generated assembly).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from graphopt.targets.cpu.schedule import prepare_cpu_module
from graphopt.targets.cpu.vnni import has_vnni
from graphopt.targets.pipeline.relax_pipeline import compile_module
from graphopt.targets.registry import get_target

CPU = get_target("cpu")
TARGET = CPU.make_target({"num_cores": 2})
needs_vnni = pytest.mark.skipif(not has_vnni(TARGET), reason="this CPU has no AVX-512 VNNI")


def _compile(inputs: list[relax.Var], make_output) -> relax.VirtualMachine:
    bb = relax.BlockBuilder()
    with bb.function("main", inputs):
        with bb.dataflow():
            out = bb.emit_output(make_output(*inputs))
        bb.emit_func_output(out)
    executable = compile_module(bb.get(), CPU, TARGET, {})
    return executable, relax.VirtualMachine(executable, tvm.cpu())


def _integers(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=shape).astype(dtype)


@pytest.mark.parametrize(("activation", "n"), [("uint8", 64), ("int8", 48), ("int8", 10)])
def test_int8_matmul_is_exact(activation: str, n: int) -> None:
    a, w = _integers((24, 70), activation, 0), _integers((70, n), "int8", 1)  # K = 70: padded to 72
    x = relax.Var("x", relax.TensorType(a.shape, activation))
    weight = relax.const(w)
    _, vm = _compile([x], lambda x: relax.op.matmul(x, weight, out_dtype="int32"))
    out = vm["main"](tvm.runtime.tensor(a)).numpy()
    assert np.array_equal(out, a.astype(np.int64) @ w.astype(np.int64))


CONVS = {
    "3x3 pad 1": dict(channels=16, out_channels=32, kernel=3, stride=1, padding=1, dilation=1),
    "one input channel": dict(channels=1, out_channels=16, kernel=3, stride=1, padding=1, dilation=1),
    "stride 2, odd channels": dict(channels=3, out_channels=10, kernel=3, stride=2, padding=1, dilation=1),
    "dilated 1x3 pad 0": dict(channels=8, out_channels=16, kernel=(1, 3), stride=1, padding=0, dilation=2),
    "1x1": dict(channels=24, out_channels=16, kernel=1, stride=1, padding=0, dilation=1),
}


@pytest.mark.parametrize("activation", ["uint8", "int8"])
@pytest.mark.parametrize("case", list(CONVS))
def test_int8_nhwc_conv2d_is_exact(case: str, activation: str) -> None:
    spec = CONVS[case]
    kh, kw = spec["kernel"] if isinstance(spec["kernel"], tuple) else (spec["kernel"],) * 2
    data = _integers((2, 9, 11, spec["channels"]), activation, 2)
    kernel = _integers((kh, kw, spec["channels"], spec["out_channels"]), "int8", 3)
    x = relax.Var("x", relax.TensorType(data.shape, activation))
    weight = relax.const(kernel)

    def conv(x: relax.Expr) -> relax.Expr:
        return relax.op.nn.conv2d(
            x,
            weight,
            strides=spec["stride"],
            padding=spec["padding"],
            dilation=spec["dilation"],
            data_layout="NHWC",
            kernel_layout="HWIO",
            out_dtype="int32",
        )

    executable, vm = _compile([x], conv)
    out = vm["main"](tvm.runtime.tensor(data)).numpy()
    # float64 holds these sums (|sum| < 2^15 * 9 * 24) exactly
    reference = torch.nn.functional.conv2d(
        torch.from_numpy(data.astype(np.float64)).permute(0, 3, 1, 2),
        torch.from_numpy(kernel.astype(np.float64)).permute(3, 2, 0, 1),
        stride=spec["stride"],
        padding=spec["padding"],
        dilation=spec["dilation"],
    ).permute(0, 2, 3, 1)
    assert out.shape == tuple(reference.shape)
    assert np.array_equal(out, reference.numpy().astype(np.int64))
    if has_vnni(TARGET):
        assert "vpdpbusd" in executable.mod.imports[0].inspect_source("asm")


@needs_vnni
def test_int8_matmul_uses_vpdpbusd() -> None:
    x = relax.Var("x", relax.TensorType((16, 64), "uint8"))
    weight = relax.const(_integers((64, 32), "int8", 4))
    executable, _ = _compile([x], lambda x: relax.op.matmul(x, weight, out_dtype="int32"))
    assert "vpdpbusd" in executable.mod.imports[0].inspect_source("asm")


def test_importing_the_cpu_kernels_changes_no_global_legalization() -> None:
    """TVM's own matmul/conv2d legalizations stay registered after the CPU modules are imported (a
    fresh interpreter, so nothing imported them before): other targets' builds keep TVM's kernels."""
    code = """
import tvm
ops = ["relax.matmul", "relax.nn.conv2d"]
before = [tvm.ir.Op.get(op).get_attr("FLegalize") for op in ops]
import graphopt.targets.cpu.int8_kernels, graphopt.targets.cpu.schedule, graphopt.targets.lowering.quantized
after = [tvm.ir.Op.get(op).get_attr("FLegalize") for op in ops]
print(all(a.same_as(b) for a, b in zip(before, after, strict=True)))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "True"


def test_the_cpu_pipeline_legalizes_int8_matmuls_on_packed_weights() -> None:
    """The packed-weight kernels are an explicit step of ``prepare_cpu_module`` (CPU and ARM builds)."""
    x = relax.Var("x", relax.TensorType((4, 64), "uint8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(x, relax.const(_integers((64, 32), "int8", 5)), out_dtype="int32"))
        bb.emit_func_output(out)
    prepared = prepare_cpu_module(bb.get(), TARGET).script()
    assert "int8_dense" in prepared and "pack_int8_weight" not in prepared  # packed once, at compile time
