"""Quantized graphs on TVM: QDQ patterns become int8 x int8 -> int32 kernels that match the reference.

Tolerance: the compiled model may differ from the PyTorch fake-quant reference by float rounding
of the accumulation, and at worst by one flipped rounding of an intermediate activation. One step
of the last layer's input, through its largest dequantized weight, bounds the latter:
``s_x * max|w|``. Measured differences are ~1e-6, far below it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import graphopt
from graphopt.targets import build
from graphopt.targets.lowering.lower import lower_to_relax
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp


def _quantized(factory, loader, **options):
    x, _ = loader("test")
    graph = graphopt.capture(factory(), x[:64])
    quantized, _ = graphopt.quantize(graph, x[:128], **options)
    return quantized, x[:64].numpy()


def _integer_kernels(quantized) -> tuple[list[str], int]:
    """(input dtypes of each int32-accumulating kernel, number of float32 matmul/conv2d kernels)."""
    text = lower_to_relax(quantized)[0].script(show_meta=False)
    integer = re.findall(r'R\.(?:matmul|nn\.conv2d)\((\w+),[^\n]*out_dtype="int32"', text)
    dtypes = [re.search(rf"{name}: R\.Tensor\([^)]*\), dtype=\"(\w+)\"", text).group(1) for name in integer]
    floats = len(re.findall(r'R\.(?:matmul|nn\.conv2d)\((?![^\n]*out_dtype="int32")', text))
    return dtypes, floats


@pytest.mark.parametrize(
    ("factory", "loader", "activation", "expected"),
    [
        (mnist_mlp, load_digits_flat, "int8", ["int8"] * 3),
        (digits_cnn, load_digits_28, "uint8", ["uint8"] * 3),
    ],
)
def test_qdq_patterns_lower_to_integer_kernels(factory, loader, activation, expected) -> None:
    quantized, _ = _quantized(factory, loader, activation=activation)
    dtypes, floats = _integer_kernels(quantized)
    assert dtypes == expected
    assert floats == 0


def test_skipped_layer_stays_float_on_tvm() -> None:
    quantized, _ = _quantized(mnist_mlp, load_digits_flat, skip=["fc3"])
    assert _integer_kernels(quantized) == (["int8", "int8"], 1)


def _one_step(quantized) -> float:
    """One step of the last linear's input scale times its largest dequantized weight."""
    last = [n for n in quantized.compute_nodes() if quantized.info(n).kind == "linear"][-1]
    scale = float(last.args[0].args[1])  # dequantize(q, scale, zero_point)
    holder = quantized.module.get_submodule(last.args[1].args[0].target.rpartition(".")[0])
    return scale * float((holder.weight_int8.abs().amax(1) * holder.weight_scale).max())


@pytest.mark.parametrize(
    ("factory", "loader", "activation"),
    [
        (mnist_mlp, load_digits_flat, "int8"),
        (digits_cnn, load_digits_28, "uint8"),
        (digits_cnn, load_digits_28, "int8"),
    ],
)
def test_int8_artifact_matches_fake_quant_reference_within_one_step(factory, loader, activation, tmp_path) -> None:
    quantized, x = _quantized(factory, loader, activation=activation)
    compiled = build(quantized, None, target="cpu", out_dir=tmp_path / "int8")
    reference = quantized(torch.from_numpy(x)).numpy()
    loaded = graphopt.load(tmp_path / "int8")
    output = loaded(x)
    assert np.abs(output - reference).max() <= _one_step(quantized)
    assert (output.argmax(1) == reference.argmax(1)).all()
    assert np.array_equal(output, compiled(x))


def test_dynamic_quantization_lowers_to_integer_kernels_with_runtime_scales() -> None:
    import tvm
    from tvm import relax

    x, _ = load_digits_flat("test")
    graph = graphopt.capture(mnist_mlp(), x[:16])
    quantized, _ = graphopt.quantize(graph)
    mod, _ = lower_to_relax(quantized)
    assert _integer_kernels(quantized) == (["uint8"] * 3, 0)
    # TVM's default pipeline, not graphopt's CPU schedules: this checks the converters' numerics
    executable = tvm.compile(mod, tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    output = vm["main"](tvm.runtime.tensor(x[:16].numpy())).numpy()
    reference = quantized(x[:16]).numpy()
    assert np.abs(output - reference).max() <= 1e-4 * np.abs(reference).max()
