"""Mistakes are reported before the first slow step (loading, capture, passes, the TVM build).

The model file here fails if it is ever loaded, so an error about anything else proves the check
ran first.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import InputError


@pytest.mark.parametrize("command", ["compile", "quantize"])
def test_a_bad_out_dir_is_refused_before_the_model_is_loaded(cli, tmp_path, never_loaded, command):
    existing_file = tmp_path / "model.so"
    existing_file.write_text("not an artifact")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("the user's")
    for out, message in [(existing_file, "a file of that name exists"), (busy, "non-empty directory")]:
        status, _, err = cli(command, never_loaded, "--input-shape", "1x8", "-o", out)
        assert status == 2 and message in err and err.count("\n") == 1, err
    assert (busy / "notes.txt").read_text() == "the user's"


@pytest.mark.parametrize("command", ["compile", "bench", "quantize"])
def test_an_unknown_target_is_refused_before_the_model_is_loaded(cli, never_loaded, command):
    status, _, err = cli(command, never_loaded, "--input-shape", "1x8", "--target", "tpu")
    assert status == 2 and "unknown target 'tpu'" in err and err.count("\n") == 1, err


def test_a_zero_size_dimension_is_refused(cli, never_loaded):
    status, _, err = cli("compile", never_loaded, "--input-shape", "0x784")
    assert status == 2 and "'0x784': every dimension must be a positive integer" in err and err.count("\n") == 1
    with pytest.raises(InputError, match="shape 0x8: every dimension must be at least 1"):
        graphopt.compile(nn.Linear(8, 2), torch.zeros(0, 8))


def test_the_api_checks_target_and_out_dir_before_capture(tmp_path):
    (tmp_path / "file").write_text("")
    not_a_model = object()  # capture would refuse it: the checks before capture answer first
    with pytest.raises(InputError, match="unknown target 'tpu'"):
        graphopt.compile(not_a_model, torch.zeros(1, 8), target="tpu")
    with pytest.raises(InputError, match="a file of that name exists"):
        graphopt.compile(not_a_model, torch.zeros(1, 8), out_dir=tmp_path / "file")


def test_a_pt2_given_another_batch_than_it_was_exported_for_is_one_line(cli, tmp_path):
    saved = tmp_path / "batch1.pt2"
    torch.export.save(torch.export.export(nn.Linear(8, 2).eval(), (torch.zeros(1, 8),)), saved)
    status, _, err = cli("compile", saved, "--input-shape", "4x8")
    assert status == 2 and err.count("\n") == 1, err
    assert "input 0 ('input') has shape 4x8, but the program was exported for 1x8" in err
    status, _, err = cli("optimize", saved, "--input-shape", "1x8", "--input-shape", "1x8")
    assert status == 2 and "the program takes 1 input(s), 2 were given" in err
