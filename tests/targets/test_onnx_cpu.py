"""ONNX files through the whole compile path: torch.onnx.export of a sample -> graphopt.compile("x.onnx")
-> CPU artifact, compared with ONNX Runtime running the same file on real inputs."""

from __future__ import annotations

import warnings

import pytest
import torch

import graphopt
from graphopt.numerics import relative_error
from graphopt.onnx.io import run_onnxruntime
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp
from samples.mobilenet import mobilenet_small_digits
from samples.resnet import resnet_small_digits
from samples.transformer import transformer_encoder
from tests.targets.conftest import TOLERANCE

pytestmark = pytest.mark.slow  # each builds a TVM artifact: 5-10 s


def _samples():
    return {
        "mnist_mlp": (mnist_mlp, lambda: load_digits_flat()[0][:16].contiguous()),
        "digits_cnn": (digits_cnn, lambda: load_digits_28()[0][:16].contiguous()),
        "transformer": (
            lambda: transformer_encoder(d_model=32, nhead=4, num_layers=2),
            lambda: torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(0)),
        ),
        "mobilenet": (mobilenet_small_digits, lambda: load_digits_28()[0][:4].contiguous()),
        "resnet": (resnet_small_digits, lambda: load_digits_28()[0][:4].contiguous()),
    }


# every sample of samples/ (each case costs a TVM build)
@pytest.mark.parametrize("name", ["mnist_mlp", "digits_cnn", "transformer", "mobilenet", "resnet"])
def test_onnx_file_compiles_for_cpu_and_matches_onnxruntime(tmp_path, name):
    factory, data = _samples()[name]
    model, x = factory(), data()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamo=False)
    compiled = graphopt.compile(str(path), None, target="cpu", out_dir=tmp_path / "artifact")
    artifact = graphopt.load(tmp_path / "artifact")
    reference = run_onnxruntime(path, x)[0]
    assert relative_error(reference, artifact(x.numpy())) < TOLERANCE
    assert relative_error(reference, compiled(x.numpy())) < TOLERANCE


@pytest.mark.parametrize(("name", "integer_ops"), [("digits_cnn", 3)])  # two Convs and a Gemm
def test_onnxruntime_qdq_model_lowers_to_integer_kernels_and_matches_it(tmp_path, name, integer_ops):
    """A model quantized by ONNX Runtime's own quantize_static (QDQ format) imports as graphopt's
    quantize/dequantize ops, so the CPU target computes its Gemms and Convs as int8 x int8 -> int32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from graphopt.targets.lowering.lower import lower_to_relax

    factory, data = _samples()[name]
    x = data()[:2].contiguous()
    calibration = [data()[i : i + 2].numpy() for i in range(2, 10, 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(factory(), (x,), str(tmp_path / "float.onnx"), input_names=["x"], dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": batch} for batch in calibration])

        def get_next(self):
            return next(self.batches, None)

    path = tmp_path / "int8.onnx"
    quantize_static(
        str(tmp_path / "float.onnx"),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    optimized, _ = graphopt.optimize(graphopt.capture(str(path), x), "O2")
    module, _ = lower_to_relax(optimized)
    assert module.script().count('out_dtype="int32"') == integer_ops
    compiled = graphopt.compile(str(path), x, target="cpu")
    reference = run_onnxruntime(path, x)[0]
    # the same integer arithmetic; float32 epilogues may round an activation one step apart
    assert relative_error(reference, compiled(x.numpy())) < 2e-3
    assert (compiled(x.numpy()).argmax(1) == reference.argmax(1)).all()


def test_rotary_embedding_rotating_every_channel_builds_and_matches_onnxruntime(tmp_path):
    """With no ``rotary_embedding_dim`` every channel rotates; the empty pass-through part that was still
    concatenated became a loop of extent 0, which TVM's LLVM backend refused to build."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    inputs = [("x", (2, 4, 3, 8)), ("cos", (50, 4)), ("sin", (50, 4))]
    node = helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"])
    graph = helper.make_graph(
        [node],
        "rotary",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
        + [helper.make_tensor_value_info("pos", TensorProto.INT64, (2, 3))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 4, 3, 8))],
    )
    path = tmp_path / "rotary.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]), path)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for _, s in inputs] + [rng.integers(0, 50, (2, 3))]
    tensors = tuple(torch.from_numpy(a) for a in arrays)
    compiled = graphopt.compile(str(path), tensors, target="cpu")
    (expected,) = run_onnxruntime(path, tensors)
    assert relative_error(expected, compiled(*arrays)) <= TOLERANCE
