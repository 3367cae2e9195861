"""int8 transformers in ONNX Runtime's integer kernels: a Linear on (batch, seq, hidden) exports as a 3-d
MatMul + bias Add, which ONNX Runtime's MatMulAddFusion would turn into Reshape -> float Gemm -> Reshape
before its QDQ fusion sees it; graphopt/onnx/qdq_export.py writes the bias as a [1, n] row, so the MatMul
reads its DequantizeLinear nodes directly and runs as MatMulIntegerToFloat.

The transformer sample of tests/test_onnx.py (2 layers, d_model 32, 4 heads: 12 Linears and 4 attention
matmuls), calibrated on 64 seeded random embeddings.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphopt
from graphopt.numerics import relative_error
from graphopt.onnx.io import run_onnxruntime
from graphopt.targets import build
from samples.transformer import transformer_encoder
from tests.test_onnx import ops_onnxruntime_runs


@pytest.fixture(scope="module")
def transformer():
    torch.manual_seed(0)
    model = transformer_encoder(d_model=32, nhead=4, num_layers=2)
    x, calibration = torch.randn(2, 8, 32), torch.randn(64, 8, 32)
    optimized, _ = graphopt.optimize(graphopt.capture(model, x), "O2")
    return model, optimized, calibration, x


def float_matmuls(ran) -> int:
    return ran["MatMul"] + ran["Gemm"] + ran["FusedMatMul"] + ran["MatMulNBits"]


def test_static_int8_transformer_runs_every_matmul_in_integer_kernels(transformer, tmp_path):
    """The 12 Linears as MatMulIntegerToFloat (their outputs go on in float: into bias adds, then GELU,
    the residual stream or a reshape to heads); of the 4 attention matmuls, the two whose output is
    quantized next (softmax @ v, through Transpose/Reshape) as QLinearMatMul, q @ k^T (scaled, then
    softmax) as MatMulIntegerToFloat. Before the row bias: 12 float Gemm (ONNX Runtime's MatMulAddFusion)."""
    _, optimized, calibration, _ = transformer
    quantized, _ = graphopt.quantize(optimized, calibration)
    ran = ops_onnxruntime_runs(graphopt.export_onnx(quantized, tmp_path / "transformer_int8.onnx"))
    assert (ran["MatMulIntegerToFloat"], ran["QLinearMatMul"], float_matmuls(ran)) == (14, 2, 0)
    assert ran["DequantizeLinear"] == 0  # every dequantized tensor is read by an integer kernel


def test_dynamic_int8_transformer_runs_every_linear_in_integer_kernels(transformer, tmp_path):
    """Dynamic quantization (DynamicQuantizeLinear per activation): the 12 Linears as
    DynamicQuantizeMatMul / MatMulIntegerToFloat, where ONNX Runtime made them MatMulNBits (int8
    weights, float activations: 0.017 off graphopt's int8 graph); now float32 accumulation order
    only. The attention matmuls stay float: graphopt's dynamic plan quantizes Linear weights only."""
    _, optimized, _, x = transformer
    quantized, report = graphopt.quantize(optimized, None)
    assert report.mode == "dynamic"
    path = graphopt.export_onnx(quantized, tmp_path / "transformer_dynamic.onnx")
    ran = ops_onnxruntime_runs(path)
    assert (ran["MatMulIntegerToFloat"] + ran["DynamicQuantizeMatMul"], ran["MatMulNBits"]) == (12, 0)
    assert ran["MatMul"] + ran["FusedMatMul"] == 4
    assert relative_error(quantized(x), run_onnxruntime(path, x)[0]) < 1e-5  # measured 2e-7


def test_onnxruntime_matches_the_int8_cpu_artifact_within_one_output_step(transformer, tmp_path):
    """ONNX Runtime's integer sums are graphopt's (int8 x int8 -> int32, times s_in * s_w, then the float
    bias), so it equals the CPU artifact up to float32 order: measured 5e-7 at most (1.5e-7 relative);
    the float Gemms it ran before were 0.009 off, a rounding flip of an activation.

    The output (a LayerNorm) is float; one step of it is its int8 resolution, max|y| / 127 (0.025 here,
    the outputs reach 3.1). A flip of one quantized activation moves the output by less than that."""
    model, optimized, calibration, x = transformer
    quantized, _ = graphopt.quantize(optimized, calibration)
    build(quantized, None, target="cpu", out_dir=tmp_path / "artifact")
    artifact = np.asarray(graphopt.load(tmp_path / "artifact")(x.numpy()))
    assert relative_error(quantized(x), artifact) < 1e-5  # the artifact is the IR up to float order
    theirs = run_onnxruntime(graphopt.export_onnx(quantized, tmp_path / "transformer_int8.onnx"), x)[0]
    one_output_step = np.abs(artifact).max() / 127
    assert np.abs(theirs - artifact).max() <= one_output_step
    assert relative_error(artifact, theirs) < 1e-4  # no flip on these inputs (measured 1.5e-7)
    assert relative_error(model(x).detach(), theirs) > 1e-3  # and it does run in int8 (measured 0.007)
