"""The ``graphopt`` command line, run in-process through ``graphopt.cli.main`` as a user would type it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import graphopt
import graphopt.commands
from graphopt.cli import main
from graphopt.pass_api import PassResult, register_pass, unregister_pass

ROOT = Path(__file__).resolve().parent.parent
MLP = f"{ROOT}/samples/mnist_mlp.py:mnist_mlp"
CNN = f"{ROOT}/samples/cnn.py:digits_cnn"
HAVE_TVM = importlib.util.find_spec("tvm") is not None


def run(capsys, *argv):
    """``graphopt *argv`` -> (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def write_model(tmp_path, source: str) -> Path:
    path = tmp_path / "user_model.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_help_lists_every_command_module(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for name in graphopt.commands.command_names():
        assert name in out
    assert {"compile", "optimize", "passes", "bench"} <= set(graphopt.commands.command_names())


def test_a_new_command_module_plugs_in_and_a_broken_one_fails_alone(capsys, tmp_path, monkeypatch, request):
    package = tmp_path / "graphopt" / "commands"
    package.mkdir(parents=True)
    (package / "hello.py").write_text(
        "def add_parser(subparsers):\n"
        "    p = subparsers.add_parser('hello', help='say hello')\n"
        "    p.add_argument('--name', default='world')\n\n"
        "def run(args):\n"
        "    print(f'hello {args.name}')\n"
        "    return 0\n"
    )
    (package / "broken.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.setattr(graphopt.commands, "__path__", [*graphopt.commands.__path__, str(package)])
    for name in ("hello", "broken"):
        request.addfinalizer(lambda name=name: sys.modules.pop(f"graphopt.commands.{name}", None))
    assert run(capsys, "hello", "--name", "graphopt")[:2] == (0, "hello graphopt\n")
    assert run(capsys, "passes", "--json")[0] == 0
    status, _, err = run(capsys, "broken")
    assert status == 2
    assert (
        err
        == "graphopt: error: the 'broken' command failed to load: ModuleNotFoundError: No module named 'no_such_module_anywhere'\n"
    )


def test_optimize_prints_the_report_as_json(capsys):
    status, out, err = run(capsys, "optimize", MLP, "--input-shape", "4x784", "--verify", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["model"] == "MnistMLP" and report["capture_method"] == "symbolic_trace"
    assert report["initial"]["nodes"] == 5
    assert report["initial"]["params"] == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert report["initial"]["flops"] == 4 * (2 * (784 * 256 + 256 * 128 + 128 * 10) + 256 + 128)


@pytest.fixture
def scale_pass():
    """A test pass with an option, registered for the duration of one test."""

    @register_pass("t_cli_scale")
    def scale(graph, *, factor: float = 1.0):
        """Multiply the last linear layer's weights by ``factor`` (1.0 keeps the model exact)."""
        last = [n for n in graph.compute_nodes() if graph.info(n).kind == "linear"][-1]
        with torch.no_grad():
            graph.module.get_submodule(last.target).weight.mul_(factor)
        return PassResult(graph, changed=factor != 1.0, details={"factor": factor})

    yield "t_cli_scale"
    unregister_pass("t_cli_scale")


def test_optimize_table_shows_each_pass_and_options_reach_it(capsys, scale_pass, tmp_path):
    status, out, _ = run(
        capsys,
        "optimize",
        MLP,
        "--input-shape",
        "1x784",
        "--passes",
        scale_pass,
        "--pass-option",
        f"{scale_pass}.factor=2",
    )
    assert status == 0
    assert "t_cli_scale" in out and "factor=2" in out and "(captured)" in out
    dump = tmp_path / "ir"
    status, _, err = run(
        capsys,
        "optimize",
        MLP,
        "--input-shape",
        "1x784",
        "--passes",
        scale_pass,
        "--pass-option",
        f"{scale_pass}.factor=2",
        "--verify",
        "--dump-ir",
        dump,
    )
    assert status == 2
    assert err.startswith("graphopt: error: verification failed after pass 't_cli_scale'") and err.count("\n") == 1
    assert sorted(p.name for p in dump.iterdir()) == ["00_captured.txt"]


def test_passes_lists_name_description_options_and_requires(capsys, scale_pass):
    status, out, _ = run(capsys, "passes", "--json")
    assert status == 0
    listed = {p["name"]: p for p in json.loads(out)["passes"]}
    assert (
        listed[scale_pass]["description"]
        == "Multiply the last linear layer's weights by ``factor`` (1.0 keeps the model exact)."
    )
    assert listed[scale_pass]["options"] == {"factor": 1.0} and listed[scale_pass]["requires"] == []
    assert set(json.loads(out)["presets"]) == {"O0", "O1", "O2", "O3"}
    status, out, _ = run(capsys, "passes")
    assert status == 0 and scale_pass in out and "factor=1.0" in out


UNTRACEABLE = """
    import torch
    from torch import nn

    class Gate(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x + 1
            return x - 1

    class NeedsArgs(nn.Module):
        def __init__(self, width):
            super().__init__()

    def broken_factory():
        return 1 / 0

    def not_a_model():
        return 42

    class Unlowerable(nn.Module):
        def forward(self, x):
            return torch.special.erfinv(torch.tanh(x) * 0.5)
"""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["optimize", "missing.py:Net", "--input-shape", "1x4"], "model file not found: missing.py"),
        (
            ["optimize", f"{ROOT}/samples/mnist_mlp.py:Nope", "--input-shape", "1x4"],
            "has no 'Nope' (models and factories there: MnistMLP, mnist_mlp)",
        ),
        (
            ["optimize", MLP, "--input-shape", "1x100"],
            "mat1 and mat2 shapes cannot be multiplied (1x100 and 784x256) (node 'fc1', at ",
        ),
        (
            ["optimize", MLP, "--input-shape", "1x784", "--input-dtype", "int64"],
            "(1, 784) int64: mat1 and mat2 must have the same dtype",
        ),
        (["optimize", MLP, "--input-shape", "1x784", "--input-dtype", "complex7"], "unknown input dtype 'complex7'"),
        (["optimize", MLP, "--input-shape", "1by784"], "bad input shape '1by784'"),
        (["optimize", MLP], "give the input shape, e.g. --input-shape 1x784"),
        (
            ["optimize", MLP, "--input-shape", "1x784", "--passes", "no_such_pass"],
            "unknown pass 'no_such_pass' (registered passes: ",
        ),
        (["optimize", MLP, "--input-shape", "1x784", "--pass-option", "nodot=1"], "bad --pass-option 'nodot=1'"),
        (["optimize", "model.onnx"], "ONNX file not found: model.onnx"),
        (["optimize", "weights.pt"], "a .pt file holds weights, not a model"),
        (["optimize", "{model}:Gate", "--input-shape", "2x4"], "cannot capture Gate: symbolic_trace failed"),
        (
            ["optimize", "{model}:NeedsArgs", "--input-shape", "2x4"],
            "cannot call class {model}:NeedsArgs with no arguments",
        ),
        (
            ["optimize", "{model}:broken_factory", "--input-shape", "2x4"],
            "ZeroDivisionError: division by zero (at {model}:",
        ),
        (["optimize", "{model}:not_a_model", "--input-shape", "2x4"], "returned a int, expected a torch.nn.Module"),
        (["compile", MLP, "--input-shape", "1x784", "--target-option", "novalue"], "bad --target-option 'novalue'"),
        (["bench", MLP, "--input-shape", "1x784", "--runs", "0"], "--runs, --repeat and --top must be at least 1"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_status_2(capsys, tmp_path, argv, message):
    model = write_model(tmp_path, UNTRACEABLE)
    argv = [a.format(model=model) for a in argv]
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert err.startswith("graphopt: error: ") and err.count("\n") == 1, err
    assert message.format(model=model) in err
    assert "Traceback" not in err and out == ""


def test_an_untraceable_model_names_the_users_line(capsys, tmp_path):
    model = write_model(tmp_path, UNTRACEABLE)
    status, _, err = run(capsys, "optimize", f"{model}:Gate", "--input-shape", "2x4")
    assert status == 2
    assert f"(at {model}:7 `if x.sum() > 0:`)" in err
    assert "def forward" not in err  # torch.export's dump of the partial graph is held back


def test_debug_shows_the_traceback(capsys):
    status, _, err = run(capsys, "optimize", MLP, "--input-shape", "1x100", "--debug")
    assert status == 2
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("graphopt: error:")


def test_model_specs_may_name_a_class_a_factory_or_a_module(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    results = []
    for spec in ("samples/mnist_mlp.py:MnistMLP", "samples.mnist_mlp:mnist_mlp", "samples/cnn.py:DigitsCNN"):
        shape = "1x1x28x28" if "cnn" in spec.lower() else "1x784"
        status, out, err = run(capsys, "optimize", spec, "--input-shape", shape, "--json")
        assert status == 0, err
        results.append(json.loads(out)["initial"])
    assert results[0] == results[1]  # same model, two spellings
    assert results[2]["nodes"] == 10


def test_a_model_file_imports_its_neighbours_and_its_package_from_any_directory(capsys, tmp_path, monkeypatch):
    package = tmp_path / "project" / "mynets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "blocks.py").write_text("from torch import nn\n\ndef block():\n    return nn.Linear(4, 3)\n")
    (package / "sizes.py").write_text("HIDDEN = 4\n")
    (package / "model.py").write_text(
        "from torch import nn\nfrom sizes import HIDDEN\nfrom mynets.blocks import block\n\n"
        "def net():\n    return nn.Sequential(nn.Linear(2, HIDDEN), block())\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))
    status, out, err = run(capsys, "optimize", f"{package / 'model.py'}:net", "--input-shape", "1x2", "--json")
    assert status == 0, err
    assert json.loads(out)["initial"]["params"] == 2 * 4 + 4 + 4 * 3 + 3


def test_an_optimized_graph_saved_as_pt2_loads_back(capsys, tmp_path, scale_pass):
    saved = tmp_path / "deep" / "cnn.pt2"
    argv = [
        "optimize",
        CNN,
        "--input-shape",
        "2x1x28x28",
        "--passes",
        scale_pass,
        "--pass-option",
        f"{scale_pass}.factor=3",
    ]
    status, out, err = run(capsys, *argv, "-o", saved, "--json")
    assert status == 0, err
    first = json.loads(out)
    assert saved.is_file() and [p.name for p in saved.parent.iterdir()] == ["cnn.pt2"]  # no temp file left
    status, out, err = run(capsys, "optimize", saved, "--json", "--passes", "O0")  # shapes come from the program
    assert status == 0, err
    second = json.loads(out)
    assert second["model"] == "cnn" and second["capture_method"] == "export"
    assert second["initial"]["flops"] == first["final"]["flops"]
    assert second["initial"]["param_bytes"] == first["final"]["param_bytes"]
    from samples.cnn import digits_cnn

    model = digits_cnn()
    with torch.no_grad():
        model.fc.weight.mul_(3)
        x = torch.randn(2, 1, 28, 28)
        assert torch.allclose(torch.export.load(str(saved)).module()(x), model(x), rtol=0, atol=1e-5)


def test_a_corrupt_pt2_is_a_clear_error(capsys, tmp_path):
    corrupt = tmp_path / "model.pt2"
    corrupt.write_text("not a zip archive")
    status, _, err = run(capsys, "optimize", corrupt)
    assert status == 2 and err.count("\n") == 1
    assert f"cannot read {corrupt} as a torch.export program (.pt2)" in err


def test_the_console_script_is_installed_and_runs():
    script = Path(sys.executable).parent / "graphopt"
    result = subprocess.run([script, "optimize", MLP, "--input-shape", "1x7"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("graphopt: error: the model fails on example inputs of shape (1, 7) float32")
    assert result.stderr.count("\n") == 1  # no warnings from torch either


# -- compile and bench need the TVM targets -----------------------------------------------------------

needs_tvm = pytest.mark.skipif(not HAVE_TVM, reason="TVM is not installed")


@needs_tvm
def test_compile_writes_the_artifact_and_checks_it_against_eager(capsys, tmp_path, scale_pass):
    out_dir, dump = tmp_path / "mlp", tmp_path / "ir"
    status, out, err = run(
        capsys,
        "compile",
        MLP,
        "--input-shape",
        "2x784",
        "-o",
        out_dir,
        "--passes",
        scale_pass,
        "--verify",
        "--dump-ir",
        dump,
        "--json",
    )
    assert status == 0, err
    result = json.loads(out)
    assert sorted(p.name for p in dump.iterdir()) == ["00_captured.txt", f"01_{scale_pass}.txt"]
    assert [(p["name"], p["max_error"]) for p in result["passes"]] == [(scale_pass, 0.0)]  # --verify ran
    assert result["target"] == "cpu" and result["out_dir"] == str(out_dir)
    assert result["eager_check"]["checked"] and result["eager_check"]["ok"]
    assert result["eager_check"]["max_relative_error"] <= 1e-4
    assert (out_dir / "manifest.json").is_file()
    compiled = graphopt.load(out_dir)
    x = torch.randn(2, 784)
    from samples.mnist_mlp import mnist_mlp

    with torch.no_grad():
        expected = mnist_mlp()(x).numpy()
    assert abs(compiled(x.numpy()) - expected).max() <= 1e-4 * abs(expected).max()


@needs_tvm
def test_a_failed_compile_leaves_no_output_directory(capsys, tmp_path):
    out_dir = tmp_path / "never"
    status, _, err = run(capsys, "compile", MLP, "--input-shape", "1x784", "--target", "no_such_target", "-o", out_dir)
    assert status == 2 and "unknown target 'no_such_target'" in err and err.count("\n") == 1
    model = write_model(tmp_path, UNTRACEABLE)
    status, _, err = run(capsys, "compile", f"{model}:Unlowerable", "--input-shape", "2x4", "-o", out_dir)
    assert status == 2 and err.count("\n") == 1
    assert f"aten.erfinv.default at node 'special_erfinv' ({model}:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user_model.py"]  # no artifact, no temp dir


@needs_tvm
def test_bench_times_eager_and_compiled(capsys):
    status, out, err = run(capsys, "bench", MLP, "--input-shape", "1x784", "--runs", "3", "--repeat", "2", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["eager_ms"] > 0 and result["compiled_ms"] > 0
    assert result["speedup"] == pytest.approx(result["eager_ms"] / result["compiled_ms"])
    assert result["latency_ratio"] == pytest.approx(result["compiled_ms"] / result["eager_ms"])
    status, out, _ = run(capsys, "bench", MLP, "--input-shape", "1x784", "--runs", "2", "--repeat", "1")
    assert status == 0 and "PyTorch eager" in out and "1.00x" in out
    assert "latency vs eager (lower is faster)" in out and "speed-up" in out


@pytest.fixture
def rpc_server():
    """A TVM RPC server on a free local port, as a remote device would run it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tvm.exec.rpc_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@needs_tvm
@pytest.mark.slow
def test_bench_times_the_artifact_on_an_rpc_server(capsys, rpc_server):
    status, out, err = run(
        capsys, "bench", MLP, "--input-shape", "1x784", "--runs", "3", "--repeat", "2", "--rpc", rpc_server, "--json"
    )
    assert status == 0, err
    result = json.loads(out)
    assert result["where"] == rpc_server and result["compiled_ms"] > 0
    status, _, err = run(capsys, "bench", MLP, "--input-shape", "1x784", "--rpc", "127.0.0.1:1")
    assert status == 2 and "cannot reach the RPC server at 127.0.0.1:1" in err and err.count("\n") == 1
