"""``graphopt compress`` as a user types it: one row per stage, the artifact it writes, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import graphopt
from graphopt.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = Path(__file__).resolve().parent / "tiny_models.py"
MLP = f"{TINY}:tiny_mlp"


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["compress", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow  # three TVM builds of a tiny MLP, one fine-tune
def test_prune_and_share_report_every_stage_and_write_the_artifact(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "mlp"
    argv = [MLP, "--input-shape", "1x32", "--prune", "0.5", "--share", "3", "--no-latency", "--json"]
    data = ["--data", f"{TINY}:train_data", "--fine-tune-epochs", "1", "--eval", f"{TINY}:accuracy"]
    status, out, _ = run(capsys, *argv, *data, "-o", out_dir)
    assert status == 0
    result = json.loads(out)
    assert [s["name"] for s in result["stages"]] == ["float32", "pruned 50%", "shared 3 bits"]
    float32, _, shared = result["stages"]
    assert shared["payload_bytes"] * 4 < float32["payload_bytes"]  # half the weights, 3 of 32 bits, biases raw
    assert shared["payload_bytes"] == (out_dir / "weights.gopw").stat().st_size
    assert result["artifact_accuracy"] == shared["accuracy"]  # the loaded artifact predicts as PyTorch does
    assert graphopt.load(out_dir)(np.zeros((7, 32), np.float32)).shape == (7, 5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--share", "9"], "bits must be an integer from 1 to 8, got 9"),
        (["--prune", "1.2"], r"sparsity must be a number in \[0, 1\), got 1.2"),
        ([], "nothing to do: give --prune, --share and/or --quantize"),
        (["--share", "4", "--per-channel", "--channel-scale"], "--per-channel and --channel-scale exclude each other"),
        (["--prune", "0.5", "--channel-scale"], "--per-channel, --channel-scale and --half-biases go with --share"),
        (
            ["--share", "4", "--eval", "samples.digits:nope"],
            "--eval samples.digits:nope: samples.digits has no function 'nope'",
        ),
    ],
)
def test_bad_options_are_one_line_errors(capsys, options: list[str], message: str) -> None:
    status, _, err = run(capsys, MLP, "--input-shape", "1x32", *options)
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


@pytest.mark.slow  # two TVM builds of a tiny MLP
def test_channel_scale_and_half_biases_reach_the_artifact(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "scaled"
    argv = [MLP, "--input-shape", "1x32", "--share", "3", "--channel-scale", "--half-biases", "--no-latency"]
    status, out, _ = run(capsys, *argv, "--eval", f"{TINY}:accuracy", "--json", "-o", out_dir)
    assert status == 0
    result = json.loads(out)
    assert result["artifact_accuracy"] == result["stages"][-1]["accuracy"]
    forms = {t["form"] for t in json.loads((out_dir / "manifest.json").read_text())["weights"]["tensors"]}
    assert forms == {"scaled codebook", "half"}


@pytest.mark.slow  # two TVM builds of a tiny MLP
def test_pack_library_packs_every_stages_artifact_and_the_sizes_count_it(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "packed"
    argv = [MLP, "--input-shape", "1x32", "--share", "3", "--no-latency", "--pack-library"]
    status, out, _ = run(capsys, *argv, "--eval", f"{TINY}:accuracy", "--json", "-o", out_dir)
    assert status == 0
    result = json.loads(out)
    assert sorted(p.name for p in out_dir.iterdir()) == ["manifest.json", "model.so.xz", "weights.gopw"]
    assert result["stages"][-1]["disk_bytes"] == sum(p.stat().st_size for p in out_dir.iterdir())
    assert result["artifact_accuracy"] == result["stages"][-1]["accuracy"]  # loaded from the packed library
