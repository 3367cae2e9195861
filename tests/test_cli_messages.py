"""What a user reads: help as plain text, verification shown in the table, files saved as expected."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

import graphopt.commands
from graphopt.cli import main

ROOT = Path(__file__).resolve().parent.parent
MLP = f"{ROOT}/samples/mnist_mlp.py:mnist_mlp"


@pytest.mark.parametrize("command", graphopt.commands.command_names())
def test_help_shows_no_rest_markup(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "usage: graphopt" in out and "``" not in out


def test_optimize_verify_shows_that_verification_ran_and_each_error(cli):
    status, out, err = cli("optimize", MLP, "--input-shape", "1x784", "--passes", "O1", "--verify")
    assert status == 0, err
    assert "every pass verified in PyTorch" in out and "verify: max error" in out
    assert out.count(" relative") >= 5  # one per pass of O1
    status, out, _ = cli("optimize", MLP, "--input-shape", "1x784", "--passes", "O1")
    assert status == 0 and "verified" not in out and "max error" not in out


def test_optimize_saves_the_program_with_the_umask_mode_and_its_own_archive_name(cli, tmp_path):
    saved = tmp_path / "model.pt2"
    status, _, err = cli("optimize", MLP, "--input-shape", "1x784", "--passes", "O0", "-o", saved)
    assert status == 0, err
    umask = os.umask(0)
    os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~umask
    assert {name.split("/")[0] for name in zipfile.ZipFile(saved).namelist()} == {"model"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]


@pytest.mark.slow
def test_tvms_native_warnings_show_only_with_debug(capfd, tmp_path):
    """TVM's C++ logging writes to file descriptor 2 ("Warning: Scope Saving" when exporting)."""
    (tmp_path / "tiny.py").write_text("from torch import nn\n\ndef tiny():\n    return nn.Linear(8, 4).eval()\n")
    spec = f"{tmp_path / 'tiny.py'}:tiny"
    assert main(["compile", spec, "--input-shape", "1x8", "-o", str(tmp_path / "a"), "--no-check"]) == 0
    quiet = capfd.readouterr().err
    assert main(["compile", spec, "--input-shape", "1x8", "-o", str(tmp_path / "b"), "--debug"]) == 0
    loud = capfd.readouterr().err
    assert "Warning" in loud and "Warning" not in quiet, quiet


def test_dump_ir_shows_each_nodes_dtype_and_shape(cli, tmp_path):
    status, _, err = cli(
        "optimize", MLP, "--input-shape", "2x784", "--passes", "remove_identities", "--dump-ir", tmp_path / "ir"
    )
    assert status == 0, err
    text = (tmp_path / "ir" / "00_captured.txt").read_text()
    assert "x = input : float32[2, 784]" in text
    assert "fc3 = linear(relu2) : float32[2, 10]" in text
