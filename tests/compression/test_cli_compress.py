"""``graphopt compress`` as a user types it: one row per stage, the artifact it writes, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import graphopt
from graphopt.cli import main
from samples.digits import load_digits_flat

ROOT = Path(__file__).resolve().parents[2]
MLP = f"{ROOT}/samples/mnist_mlp.py:mnist_mlp"


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["compress", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow  # two TVM builds of the MLP
def test_share_reports_every_stage_and_writes_the_artifact(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "mlp"
    argv = [MLP, "--input-shape", "1x784", "--share", "4", "--no-latency", "--json"]
    status, out, _ = run(capsys, *argv, "--eval", "samples.digits:accuracy_flat", "-o", out_dir)
    assert status == 0
    result = json.loads(out)
    assert [s["name"] for s in result["stages"]] == ["float32", "shared 4 bits"]
    float32, shared = result["stages"]
    assert shared["payload_bytes"] * 8 < float32["payload_bytes"]  # 4 of 32 bits, then entropy-coded
    assert shared["payload_bytes"] == (out_dir / "weights.gopw").stat().st_size
    assert result["artifact_accuracy"] == shared["accuracy"]  # the loaded artifact predicts as PyTorch does
    x, _ = load_digits_flat("test")
    assert graphopt.load(out_dir)(x.numpy()).shape == (359, 10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--share", "9"], "bits must be an integer from 1 to 8, got 9"),
        (["--prune", "1.2"], r"sparsity must be a number in \[0, 1\), got 1.2"),
        ([], "nothing to do: give --prune, --share and/or --quantize"),
        (
            ["--share", "4", "--eval", "samples.digits:nope"],
            "--eval samples.digits:nope: samples.digits has no function 'nope'",
        ),
    ],
)
def test_bad_options_are_one_line_errors(capsys, options: list[str], message: str) -> None:
    status, _, err = run(capsys, MLP, "--input-shape", "1x784", *options)
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
