"""Every route that builds an artifact checks it against PyTorch eager first (graphopt.eager_check).

A wrong artifact is made the way it happens in practice: a pass that changes the numbers (here it
doubles the last layer's weights) in a pipeline run without ``--verify``.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt import progress
from graphopt.cli import main
from graphopt.eager_check import FLOAT_TOLERANCE, EagerChecker, compare
from graphopt.errors import ArtifactError, MismatchError
from graphopt.pass_api import PassResult, register_pass, unregister_pass

TINY = """
    import torch
    from torch import nn

    def tiny():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
"""


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


@pytest.fixture
def wrong_pass():
    """A pass that doubles the last linear layer's weights: the optimized graph no longer matches eager."""

    @register_pass("t_double_last_weights")
    def double(graph):
        """Double the last linear layer's weights (a wrong rewrite)."""
        last = [n for n in graph.compute_nodes() if graph.info(n).kind == "linear"][-1]
        with torch.no_grad():
            graph.module.get_submodule(last.target).weight.mul_(2.0)
        return PassResult(graph, changed=True)

    yield "t_double_last_weights"
    unregister_pass("t_double_last_weights")


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_compare_names_the_worst_output_and_judges_it_by_the_bound():
    expected = (np.ones((2, 3), np.float32), np.full((2,), 10.0, np.float32))
    close = (expected[0] + 1e-6, expected[1])
    far = (expected[0], expected[1] + 1.0)
    assert compare(expected, close, ["logits", "score"], FLOAT_TOLERANCE, quantized=False).ok is True
    result = compare(expected, far, ["logits", "score"], FLOAT_TOLERANCE, quantized=False)
    assert result.ok is False and result.output == "score" and result.max_relative_error == pytest.approx(0.1)
    assert "max relative error 0.1 on output 'score' over the example inputs (tolerance 1.0e-04)" in result.describe()
    assert compare(expected, expected[:1], ["a", "b"], FLOAT_TOLERANCE, quantized=False).ok is False


@pytest.mark.slow
def test_a_quantized_graph_is_held_to_twice_its_own_error_against_eager():
    model = tiny()
    x = torch.randn(4, 8)
    quantized, _ = graphopt.quantize(graphopt.capture(model, x))
    checker = EagerChecker(model, quantized, (x,))
    with torch.no_grad():
        stated = float((model(x) - quantized(x)).abs().max() / model(x).abs().max())
    assert checker.quantized and checker.tolerance == pytest.approx(max(FLOAT_TOLERANCE, 2 * stated))
    assert checker(lambda a: quantized(torch.from_numpy(a)).numpy())["eager_check"]["ok"] is True
    with pytest.raises(MismatchError, match="int8 bound"):
        checker(lambda a: -quantized(torch.from_numpy(a)).numpy())


@pytest.mark.slow
def test_the_api_refuses_a_wrong_artifact_and_writes_nothing(tmp_path, wrong_pass):
    x = torch.randn(2, 8)
    out_dir = tmp_path / "wrong"
    with pytest.raises(MismatchError) as raised:
        graphopt.compile(tiny(), x, passes=[wrong_pass], out_dir=out_dir)
    message = str(raised.value)
    assert "differs from PyTorch eager" in message and "output '" in message and "1.0e-04" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no artifact, no temporary folder

    kept = graphopt.compile(tiny(), x, passes=[wrong_pass], out_dir=out_dir, keep_mismatch=True)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["eager_check"]["ok"] is False and manifest["eager_check"]["max_relative_error"] > 0.01
    with pytest.raises(ArtifactError, match="allow_mismatch=True"):
        graphopt.load(out_dir)
    loaded = graphopt.load(out_dir, allow_mismatch=True)
    assert np.array_equal(loaded(x.numpy()), kept(x.numpy()))

    unchecked = graphopt.compile(tiny(), x, passes=[wrong_pass], check=False)
    assert unchecked.manifest.eager_check is None


@pytest.mark.slow
def test_a_right_artifact_records_its_check_and_loads(tmp_path):
    x = torch.randn(2, 8)
    stages: list[str] = []
    with progress.listening(stages.append):  # after the passes, each build stage names itself
        graphopt.compile(tiny(), x, out_dir=tmp_path / "right")
    assert stages == [
        "lowering 'Sequential' to TVM Relax",
        "building with TVM for cpu",
        "checking the compiled model against PyTorch eager",
        f"writing the artifact to {tmp_path / 'right'}",
    ]
    check = graphopt.load(tmp_path / "right").manifest.eager_check
    assert check["checked"] and check["ok"] and check["max_relative_error"] <= FLOAT_TOLERANCE
    assert check["tolerance"] == FLOAT_TOLERANCE and check["output"]


@pytest.mark.slow
def test_cli_compile_and_bench_stop_on_a_wrong_artifact(capsys, tmp_path, wrong_pass):
    (tmp_path / "tiny.py").write_text(textwrap.dedent(TINY))
    model, out_dir = f"{tmp_path / 'tiny.py'}:tiny", tmp_path / "out"
    status, _, err = run(capsys, "compile", model, "--input-shape", "2x8", "--passes", wrong_pass, "-o", out_dir)
    assert status == 2 and err.count("\n") == 1 and "differs from PyTorch eager" in err
    assert not out_dir.exists()

    status, out, _ = run(
        capsys, "compile", model, "--input-shape", "2x8", "--passes", wrong_pass, "-o", out_dir, "--keep-mismatch"
    )
    assert status == 1 and "differs from PyTorch eager" in out
    assert json.loads((out_dir / "manifest.json").read_text())["eager_check"]["ok"] is False

    status, out, err = run(capsys, "bench", model, "--input-shape", "2x8", "--passes", wrong_pass, "--runs", "1")
    assert status == 2 and "differs from PyTorch eager" in err and "vs eager" not in out
    status, out, _ = run(capsys, "bench", model, "--input-shape", "2x8", "--passes", wrong_pass, "--no-check")
    assert status == 0 and "vs eager" in out
