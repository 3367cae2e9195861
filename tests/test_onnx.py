"""ONNX in and out: samples exported with torch.onnx, imported into the IR, checked against ONNX Runtime;
optimized graphs exported and run by ONNX Runtime; every bad input one line.

The samples go through torch.onnx's TorchScript exporter (``dynamo=False``): about 0.2 s a model
here, where the torch.export-based exporter takes 2-12 s.
"""

from __future__ import annotations

import collections
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import graphopt
from graphopt.errors import GraphoptError, InputError, UnsupportedOpError
from graphopt.numerics import relative_error
from graphopt.onnx.io import run_onnxruntime
from samples.cnn import digits_cnn
from samples.digits import load_digits_28, load_digits_flat
from samples.mnist_mlp import mnist_mlp
from samples.mobilenet import mobilenet_small_digits
from samples.resnet import resnet_small_digits
from samples.transformer import transformer_encoder

# float32 with a different summation order (onnx2torch's torch kernels vs ONNX Runtime's): ~1e-6
# relative on these sizes; 1e-5 flags any real difference.
TOLERANCE = 1e-5


def export(model: torch.nn.Module, example: torch.Tensor, path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["x"], dynamo=False)
    return str(path)


def samples():
    return {
        "mnist_mlp": (mnist_mlp(), load_digits_flat()[0][:8]),
        "digits_cnn": (digits_cnn(), load_digits_28()[0][:8]),
        "transformer": (transformer_encoder(d_model=32, nhead=4, num_layers=2), torch.randn(2, 8, 32)),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {name: (export(model, x, folder / f"{name}.onnx"), model, x) for name, (model, x) in samples().items()}


@pytest.mark.parametrize("name", ["mnist_mlp", "digits_cnn", "transformer"])
def test_imported_sample_matches_onnxruntime_on_real_inputs(exported, name):
    path, model, x = exported[name]
    graph = graphopt.capture(path, x)  # the real digits (or random embeddings for the transformer)
    assert graph.name == name and graph.notes[0].startswith("imported from ONNX (opset ")
    assert relative_error(run_onnxruntime(path, x)[0], graph(x)) < TOLERANCE
    assert relative_error(model(x).detach(), graph(x)) < TOLERANCE
    for node in graph.compute_nodes():  # the same per-node facts as a captured PyTorch model
        assert graph.info(node).shape is not None and graph.info(node).dtype in ("float32", "int64")


@pytest.mark.parametrize(
    ("name", "passes"), [("mnist_mlp", []), ("digits_cnn", ["fuse_conv_bn", "eliminate_dead_weights"])]
)
def test_imported_graph_has_the_stats_of_the_pytorch_capture(exported, name, passes):
    path, model, x = exported[name]
    # torch.onnx folds eval-mode BatchNorm into the Conv before it, as fuse_conv_bn does
    from_torch = graphopt.optimize(graphopt.capture(model, x), passes)[0].stats()
    from_onnx = graphopt.capture(path, x).stats()
    assert (from_onnx.params, from_onnx.param_bytes, from_onnx.flops) == (
        from_torch.params,
        from_torch.param_bytes,
        from_torch.flops,
    )


def test_example_inputs_come_from_the_file(exported):
    path, _, x = exported["digits_cnn"]
    graph = graphopt.capture(path)
    assert [tuple(t.shape) for t in graph.example_inputs] == [tuple(x.shape)]
    assert graph.example_inputs[0].dtype == torch.float32


def test_passes_run_on_an_imported_graph(exported):
    path, _, x = exported["mnist_mlp"]
    optimized, report = graphopt.optimize(graphopt.capture(path, x), "O2", verify=True)
    assert report.final.nodes >= 5
    assert relative_error(run_onnxruntime(path, x)[0], optimized(x)) < TOLERANCE


@pytest.mark.parametrize("name", ["mnist_mlp", "digits_cnn"])
def test_export_of_an_optimized_graph_runs_in_onnxruntime(exported, tmp_path, name):
    _, model, x = exported[name]
    optimized, _ = graphopt.optimize(graphopt.capture(model, x), "O2")
    path = graphopt.export_onnx(optimized, tmp_path / "optimized.onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert relative_error(model(x).detach(), run_onnxruntime(path, x)[0]) < TOLERANCE
    # and back: the round trip keeps the numbers and the weights
    again = graphopt.capture(path, x)
    assert relative_error(optimized(x), again(x)) < TOLERANCE
    assert again.stats().params == optimized.stats().params


def every_sample():
    """Every model of samples/, on small real inputs (random embeddings for the transformer)."""
    return {
        **samples(),
        "mobilenet": (mobilenet_small_digits(), load_digits_28()[0][:2]),
        "resnet": (resnet_small_digits(), load_digits_28()[0][:2]),
    }


def float_param_bytes(graph) -> int:
    """Bytes of the floating-point weights: the exporter adds int64 shape constants (Reshape) and
    one-element float constants (the attention scale) as initializers, which come back as buffers."""
    tensors = {id(t): t for t in [*graph.module.parameters(), *graph.module.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values() if t.is_floating_point() and t.numel() > 1)


def kinds(graph) -> dict[str, int]:
    from collections import Counter

    from graphopt.metadata import info

    return dict(Counter(info(node).kind for node in graph.compute_nodes()))


#: the op kinds that carry the weights and the arithmetic; layout ops may change form in the round trip
WEIGHT_KINDS = ("conv2d", "matmul", "add", "relu", "relu6", "softmax", "layer_norm", "gelu", "max_pool2d")


@pytest.mark.parametrize("name", ["mnist_mlp", "digits_cnn", "transformer", "mobilenet", "resnet"])
def test_export_of_every_sample_runs_in_onnxruntime_and_round_trips(tmp_path, name):
    """graphopt export of each sample's optimized graph: ONNX Runtime matches eager, and importing the
    file back gives the same outputs, the same float weights and the same compute ops."""
    model, x = every_sample()[name]
    optimized, _ = graphopt.optimize(graphopt.capture(model, x), "O2")
    path = graphopt.export_onnx(optimized, tmp_path / f"{name}.onnx")
    assert relative_error(model(x).detach(), run_onnxruntime(path, x)[0]) < TOLERANCE
    again = graphopt.capture(path, x)
    assert relative_error(optimized(x), again(x)) < TOLERANCE
    assert float_param_bytes(again) == float_param_bytes(optimized) > 0
    before, after = kinds(optimized), kinds(again)
    assert {k: before.get(k, 0) for k in WEIGHT_KINDS} == {k: after.get(k, 0) for k in WEIGHT_KINDS}


@pytest.mark.xfail(
    strict=True,
    reason="not yet an exact round trip: the node kinds match, but ReLU6's Clip min/max come back as 22 scalar "
    "tensor constants (+88 param bytes) where the captured graph has hardtanh's Python numbers",
)
@pytest.mark.parametrize("name", ["mobilenet"])
def test_export_then_import_keeps_every_graph_statistic(tmp_path, name):
    model, x = every_sample()[name]
    optimized, _ = graphopt.optimize(graphopt.capture(model, x), "O2")
    again = graphopt.capture(graphopt.export_onnx(optimized, tmp_path / f"{name}.onnx"), x)
    assert kinds(again) == kinds(optimized)
    assert again.stats().param_bytes == optimized.stats().param_bytes


def test_fused_batchnorm_is_gone_from_the_export(tmp_path):
    class ConvBN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    model = ConvBN().eval()
    torch.nn.init.uniform_(model.bn.running_var, 0.5, 2.0)
    x = torch.randn(1, 3, 8, 8)
    optimized, _ = graphopt.optimize(graphopt.capture(model, x), ["fuse_conv_bn"])
    path = graphopt.export_onnx(optimized, tmp_path / "fused.onnx", opset=17)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 1
    assert relative_error(model(x).detach(), run_onnxruntime(path, x)[0]) < TOLERANCE


def tiny_model(nodes, inputs, outputs, opset=20, initializers=()):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def value(name, shape, kind=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, kind, shape)


def test_unsupported_ops_are_all_listed_with_node_and_opset(tmp_path):
    model = tiny_model(
        [
            helper.make_node("Relu", ["x"], ["a"], name="ok"),
            helper.make_node("ImageDecoder", ["a"], ["b"], name="decode"),
            helper.make_node("StringNormalizer", ["b"], ["y"], name="strings"),
        ],
        [value("x", [2, 4]), value("s", [2], TensorProto.INT64)],
        [value("y", [2, 4])],
        opset=23,
    )
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(UnsupportedOpError) as caught:
        graphopt.capture(tmp_path / "m.onnx")
    message = str(caught.value)
    assert message.startswith("2 ONNX node(s) cannot be imported: ")
    assert (
        "ImageDecoder (opset 23) at node 'decode'" in message
        and "StringNormalizer (opset 23) at node 'strings'" in message
    )
    assert "\n" not in message and "Relu" not in message


def test_control_flow_that_cannot_be_made_static_names_the_node(tmp_path):
    """A run-time condition between branches of different shapes (graphopt/onnx/control_flow.py)."""
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "b", [], [value("o", [1])])
    longer = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["p"], axis=0)], "l", [], [value("p", [2])])
    model = tiny_model(
        [helper.make_node("If", ["c"], ["y"], name="branch", then_branch=branch, else_branch=longer)],
        [value("c", [], TensorProto.BOOL), value("x", [1])],
        [value("y", ["n"])],
    )
    with pytest.raises(UnsupportedOpError, match=r"If \(opset 20\) at node 'branch' \(.*control flow") as caught:
        graphopt.capture(model, (torch.tensor(True), torch.ones(1)))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not an ONNX model", "is not a readable ONNX model (truncated, or not ONNX)"),
        (None, "is not a readable ONNX model (truncated, or not ONNX)"),  # a truncated file
        (b"", "is not an ONNX model: it has no graph outputs or no opset"),
    ],
)
def test_corrupt_files_are_one_line(tmp_path, exported, content, message):
    path = tmp_path / "bad.onnx"
    if content is None:
        content = Path(exported["digits_cnn"][0]).read_bytes()[:2000]
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        graphopt.capture(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_and_missing_external_data(tmp_path):
    with pytest.raises(InputError, match="ONNX file not found: "):
        graphopt.capture(tmp_path / "nowhere.onnx")
    weight = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    model = tiny_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [value("x", [1, 4])], [value("y", [1, 4])])
    model.graph.initializer.append(weight)
    onnx.save(model, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.data", size_threshold=0)
    assert graphopt.capture(tmp_path / "ext.onnx", torch.ones(1, 4))(torch.ones(1, 4)).sum() == 16
    (tmp_path / "ext.data").unlink()
    with pytest.raises(InputError, match="cannot load its external data"):
        graphopt.capture(tmp_path / "ext.onnx")


def test_opset_and_input_checks(tmp_path, exported):
    # Add changed at opset 7 (broadcasting): an opset-6 Add is refused
    old = tiny_model([helper.make_node("Add", ["x", "x"], ["y"])], [value("x", [2])], [value("y", [2])], opset=6)
    with pytest.raises(InputError, match=r"ONNX opset 6 is not supported \(graphopt imports opsets 7 to \d+\)"):
        graphopt.capture(old)
    # Relu-6 is still the Relu of opset 7: that model means the same at opset 7 and imports
    same = tiny_model([helper.make_node("Relu", ["x"], ["y"])], [value("x", [2])], [value("y", [2])], opset=6)
    assert graphopt.capture(same, torch.tensor([-1.0, 2.0]))(torch.tensor([-1.0, 2.0])).tolist() == [0.0, 2.0]
    path = exported["mnist_mlp"][0]
    with pytest.raises(
        InputError, match=r"ONNX input 'x' 8x784 tensor\(float\) was given 1x100 float32 \(wrong shape\)"
    ):
        graphopt.capture(path, torch.zeros(1, 100))
    with pytest.raises(InputError, match=r"was given 8x784 int64 \(wrong dtype\)"):
        graphopt.capture(path, torch.zeros(8, 784, dtype=torch.int64))
    symbolic = tiny_model(
        [helper.make_node("Relu", ["x"], ["y"])], [value("x", ["batch", 3])], [value("y", ["batch", 3])]
    )
    with pytest.raises(InputError, match="has symbolic or unknown dimensions: give the shapes"):
        graphopt.capture(symbolic)
    assert graphopt.capture(symbolic, torch.randn(5, 3)).example_inputs[0].shape == (5, 3)


def test_export_refuses_a_bad_path(exported):
    _, model, x = exported["mnist_mlp"]
    with pytest.raises(GraphoptError, match=r"should end in \.onnx"):
        graphopt.export_onnx(graphopt.capture(model, x), "model.pt2")


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_int8_graph_exports_as_qdq_and_onnxruntime_matches_it(exported, tmp_path, mode):
    _, model, x = exported["mnist_mlp"]
    graph = graphopt.capture(model, x)
    calibration = load_digits_flat("train")[0][:64] if mode == "static" else None
    quantized, report = graphopt.quantize(graph, calibration)
    assert report.mode == mode
    path = graphopt.export_onnx(quantized, tmp_path / "int8.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"DequantizeLinear", "QuantizeLinear" if mode == "static" else "DynamicQuantizeLinear"} <= ops
    weights = [t for t in onnx.load(str(path)).graph.initializer if t.data_type == TensorProto.INT8 and t.dims[1:]]
    assert len(weights) == 3  # the three Linear weights stored as int8 (the other int8 tensors: zero points)
    ran, ours = run_onnxruntime(path, x)[0], quantized(x).numpy()
    assert relative_error(model(x).detach(), ran) > 1e-3  # it really runs in int8, not float
    if mode == "dynamic":  # activations rounded at run time, the last layer too: float32 accumulation order only
        assert relative_error(ours, ran) < TOLERANCE
        return
    # Static: the accumulation order can move a value across a rounding boundary, so an activation
    # feeding fc3 may land one step (its scale s) off; each such flip moves an output by at most
    # s * max|W_fc3|. Allow two flips; predictions must agree.
    steps = [n.args[1] for n in quantized.nodes if n.target is torch.ops.graphopt.quantize.default]
    weights = quantized.module.fc3.weight_int8.float() * quantized.module.fc3.weight_scale[:, None]
    bound = 2 * steps[-1] * weights.abs().max().item()
    assert np.abs(ours - ran).max() <= bound
    assert (ours.argmax(1) == ran.argmax(1)).all()
    assert ops_onnxruntime_runs(path)["QGemm"] == 3  # its integer kernels, not float Gemm on dequantized values
    # and back: the QDQ file imports as graphopt's quantization ops again, with the int8 weights
    again = graphopt.capture(path, x)
    targets = {str(n.target) for n in again.nodes}
    assert {"graphopt.quantize.default", "graphopt.dequantize_per_channel.default"} <= targets
    assert np.abs(again(x).numpy() - ours).max() <= bound


def ops_onnxruntime_runs(path) -> collections.Counter:
    """The ops of the graph ONNX Runtime runs after its own (QDQ fusion) optimizations."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(Path(path).with_suffix(".ort.onnx"))
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


def test_int8_cnn_exports_so_onnxruntime_runs_integer_convolutions(tmp_path):
    """An optimized, calibrated CNN: every Conv and the Linear run in ONNX Runtime's integer kernels, and
    its outputs stay within one output step of graphopt's int8 graph per flipped activation (see above)."""
    x, calibration = load_digits_28()[0][:16], load_digits_28("train")[0][:64]
    optimized, _ = graphopt.optimize(graphopt.capture(digits_cnn(), x), "O2")
    quantized, _ = graphopt.quantize(optimized, calibration)
    path = graphopt.export_onnx(quantized, tmp_path / "cnn_int8.onnx")
    ran = ops_onnxruntime_runs(path)
    assert (ran["QLinearConv"], ran["QGemm"], ran["Conv"], ran["Gemm"], ran["MatMul"]) == (2, 1, 0, 0, 0)
    written = onnx.load(str(path)).graph
    used = {name for node in written.node for name in node.input} | {value.name for value in written.output}
    assert all(node.output[0] in used for node in written.node if node.op_type == "Constant")  # none ORT drops
    ours, theirs = quantized(x).numpy(), run_onnxruntime(path, x)[0]
    steps = [n.args[1] for n in quantized.nodes if n.target is torch.ops.graphopt.quantize.default]
    fc = [m for m in quantized.module.modules() if hasattr(m, "weight_int8")][-1]
    bound = 2 * steps[-1] * (fc.weight_int8.float().abs().max() * fc.weight_scale.max()).item()
    assert np.abs(ours - theirs).max() <= bound
    assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.9


def test_cli_optimizes_an_onnx_file_and_exports_one(exported, tmp_path, capsys):
    from graphopt.cli import main

    path = exported["digits_cnn"][0]
    assert main(["optimize", path, "--passes", "O1", "--json"]) == 0  # shapes come from the file
    assert '"nodes"' in capsys.readouterr().out
    out = tmp_path / "cnn_o2.onnx"
    assert main(["export", path, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "ONNX Runtime vs the optimized graph: max relative error" in printed
    assert "(ok)" in printed
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_cli_onnx_errors_are_one_line(tmp_path, capsys):
    from graphopt.cli import main

    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage")
    for argv, message in [
        (["compile", str(tmp_path / "bad.onnx")], "is not a readable ONNX model"),
        (["export", "nowhere.onnx", "-o", str(tmp_path / "x.onnx")], "ONNX file not found: nowhere.onnx"),
        (["export", "nowhere.onnx", "-o", str(tmp_path / "x.pt2")], "name the ONNX file *.onnx"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("graphopt: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.onnx").exists()


def test_without_onnx2torch_onnx_import_says_how_to_install_it(monkeypatch):
    import importlib.util
    import sys

    from graphopt.onnx import io as onnx_io

    real_find_spec = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "onnx2torch", raising=False)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnx2torch" else real_find_spec(name, *a)
    )
    with pytest.raises(graphopt.InputError, match=r"pip install --no-deps onnx2torch==1\.5\.15"):
        onnx_io._onnx2torch()
