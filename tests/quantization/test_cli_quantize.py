"""``graphopt quantize`` as a user types it: the report, JSON, labels, artifact, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import graphopt
from graphopt.cli import main
from samples.digits import load_digits_flat

ROOT = Path(__file__).resolve().parents[2]
MLP = f"{ROOT}/samples/mnist_mlp.py:mnist_mlp"


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory) -> Path:
    x, y = load_digits_flat("test")
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x[:128].numpy(), y=y[:128].numpy())
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_report_with_labels_budget_and_artifact(capsys, digits_npz, tmp_path) -> None:
    status, out, _ = run(
        capsys, "quantize", MLP, "--input-shape", "64x784", "--calibrate", digits_npz, "--labels", "y",
        "--method", "percentile", "--max-accuracy-drop", "1.0", "-o", tmp_path / "int8", "--json",
    )  # fmt: skip
    assert status == 0
    report = json.loads(out)
    assert report["mode"] == "static" and report["method"] == "percentile"
    assert report["float_accuracy"] - report["quantized_accuracy"] <= 1.0
    assert report["size_ratio"] > 3.7
    assert report["latency"]["float32_ms"] > 0 and report["latency"]["int8_ms"] > 0
    compiled = graphopt.load(tmp_path / "int8")
    x, _ = load_digits_flat("test")
    assert compiled(x[:64].numpy()).shape == (64, 10)


def test_compile_o3_with_calibration_reports_the_int8_error_and_succeeds(capsys, digits_npz, tmp_path) -> None:
    status, out, _ = run(
        capsys, "compile", MLP, "--input-shape", "8x784", "--passes", "O3", "--calibrate", digits_npz,
        "-o", tmp_path / "o3", "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert status == 0
    assert "insert_qdq" in [p["name"] for p in report["passes"]]
    check = report["eager_check"]
    assert check["checked"] and check["ok"] is True and check["quantized"]
    assert 0 < check["max_relative_error"] < 0.2 and check["max_relative_error"] <= check["tolerance"]


def test_table_without_data_is_dynamic(capsys) -> None:
    status, out, _ = run(capsys, "quantize", MLP, "--input-shape", "8x784", "--no-latency")
    assert status == 0
    assert "int8 quantization (dynamic" in out and "smaller" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calibrate", "missing.npz"], "calibration file not found"),
        (["--labels", "y"], "no calibration .npz"),
        (["--max-accuracy-drop", "0.5", "--calibrate", "DATA"], "needs labels"),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys, digits_npz, extra, message) -> None:
    extra = [str(digits_npz) if e == "DATA" else e for e in extra]
    status, _, err = run(capsys, "quantize", MLP, "--input-shape", "8x784", "--no-latency", *extra)
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_wrong_shape_calibration_data_names_the_shapes(capsys, tmp_path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((4, 10), np.float32))
    status, _, err = run(
        capsys, "quantize", MLP, "--input-shape", "8x784", "--calibrate", tmp_path / "bad.npz", "--no-latency"
    )
    assert status == 2 and "has shape 4x10, the model expects Nx784" in err


def test_a_cross_target_is_quantized_without_timing_it(capsys, tmp_path) -> None:
    # arm artifacts run here only under qemu: quantize builds the int8 artifact and says why no
    # latency is reported, instead of failing after the build. The build needs the cross compiler.
    from graphopt.targets.arm import run_on_qemu
    from tests.targets.test_arm import require_arm_tools

    require_arm_tools()
    status, out, _ = run(
        capsys, "quantize", MLP, "--input-shape", "8x784", "--target", "arm", "-o", tmp_path / "arm", "--json"
    )
    assert status == 0
    report = json.loads(out)
    assert report["latency"] == {}
    assert report["notes"] == ["latency not measured: 'arm' artifacts do not run on this machine's CPU"]
    # The aarch64 code (under qemu) computes what the x86 int8 artifact computes.
    assert run(capsys, "quantize", MLP, "--input-shape", "8x784", "-o", tmp_path / "x86", "--no-latency")[0] == 0
    x, _ = load_digits_flat("test")
    batch = x[:8].numpy()
    on_arm = run_on_qemu(tmp_path / "arm", [batch])[0]
    on_x86 = graphopt.load(tmp_path / "x86")(batch)
    np.testing.assert_allclose(on_arm, on_x86, rtol=1e-4, atol=1e-4 * np.abs(on_x86).max())


@pytest.mark.slow
def test_compile_quantize_says_what_each_error_was_measured_on(capsys, digits_npz) -> None:
    status, out, _ = run(
        capsys, "compile", MLP, "--input-shape", "8x784", "--quantize", "int8", "--calibrate", digits_npz,
    )  # fmt: skip
    assert status == 0
    assert "relative on 128 calibration sample(s)" in out  # the quantizer's figure
    assert "over the example inputs (int8 bound" in out  # the check's, on the seeded random inputs


def test_no_residual_adds_and_no_global_pools_keep_them_float(capsys, monkeypatch, tmp_path) -> None:
    """The ResNet sample's 4 residual adds and its pool read int8 inputs by default; the flags keep them float."""
    import importlib

    from samples.digits import load_digits_28

    quantize_module = importlib.import_module("graphopt.quantize")  # the module (graphopt.quantize is its function)

    made, real = [], quantize_module.quantize

    def quantize(*args, **kwargs):  # the real one, keeping the int8 graph the command made
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(quantize_module, "quantize", quantize)
    x, _ = load_digits_28("train")
    np.savez(tmp_path / "digits28.npz", x=x[:32].numpy())
    resnet = f"{ROOT}/samples/resnet.py:resnet_small_digits"
    common = [
        "quantize",
        resnet,
        "--input-shape",
        "8x1x28x28",
        "--calibrate",
        tmp_path / "digits28.npz",
        "--no-latency",
    ]
    for flags in ([], ["--no-residual-adds", "--no-global-pools"]):
        assert run(capsys, *common, *flags)[0] == 0
    dequantized = []
    for graph, _ in made:
        reads = [
            a for n in graph.compute_nodes() if graph.info(n).kind in ("add", "adaptive_avg_pool2d") for a in n.args
        ]
        dequantized.append(sum(getattr(a, "target", None) is torch.ops.graphopt.dequantize.default for a in reads))
    assert dequantized == [4 * 2 + 1, 0]  # both inputs of each add, and the pool's


@pytest.mark.parametrize("flag", ["--no-residual-adds", "--no-global-pools"])
def test_int8_adds_and_pools_flags_need_calibration_and_take_no_value(capsys, flag) -> None:
    status, _, err = run(capsys, "quantize", MLP, "--input-shape", "8x784", "--no-latency", flag)
    assert status == 2 and f"{flag} needs --calibrate" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exited:  # argparse's own refusal: the usage, then one line naming the option
        main(["quantize", MLP, "--input-shape", "8x784", f"{flag}=yes"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.strip().splitlines()[-1].endswith(f"{flag}: ignored explicit argument 'yes'")
