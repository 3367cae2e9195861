"""``graphopt compile --ensemble A B ... --combine ...``: one artifact from several models."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import graphopt
from graphopt.cli import main
from graphopt.commands.compile import COMBINE_CHOICES
from graphopt.fusion import COMBINES

MODELS = """
import torch
from torch import nn


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5)).eval()


def a():
    return _mlp(0)


def b():
    return _mlp(1)


def image():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 5)).eval()


def wide():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(8, 7)).eval()
"""


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "members.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_cli_offers_every_combine() -> None:
    assert COMBINE_CHOICES == COMBINES


@pytest.mark.slow
def test_compile_ensemble_writes_one_artifact_of_the_mean(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, models: Path
) -> None:
    out_dir = tmp_path / "ensemble"
    members = [f"{models}:a", f"{models}:b", f"{models}:a"]
    status, out, err = run(capsys, "compile", "--ensemble", *members, "--input-shape", "3x8", "-o", out_dir, "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["ensemble"]["combine"] == "mean" and len(result["ensemble"]["members"]) == 3
    assert len(result["ensemble"]["merged"]) == 3  # the third member is the first one again
    assert result["eager_check"]["ok"]
    compiled = graphopt.load(out_dir)
    x = torch.randn(3, 8)
    from graphopt.model_loading import load_model

    with torch.no_grad():
        want = sum(load_model(m)(x) for m in members) / 3
    np.testing.assert_allclose(compiled(x.numpy()), want.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--combine", "weighted", "--weights", "1"], "1 weight(s) given for 2 member(s)"),
        (["--combine", "weighted", "--weights", "1,x"], "bad --weights '1,x'"),
        (["--combine", "mean", "--weights", "1,2"], "only with combine='weighted'"),
        (["--ensemble-wide"], "shape 3x7"),
    ],
)
def test_bad_ensembles_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], models: Path, extra: list[str], message: str
) -> None:
    members = [f"{models}:a", f"{models}:wide" if "--ensemble-wide" in extra else f"{models}:b"]
    extra = [e for e in extra if e != "--ensemble-wide"]
    status, _, err = run(capsys, "compile", "--ensemble", *members, "--input-shape", "3x8", *extra)
    assert status == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_model_and_ensemble_together_or_neither(capsys: pytest.CaptureFixture[str], models: Path) -> None:
    status, _, err = run(capsys, "compile", f"{models}:a", "--ensemble", f"{models}:b", "--input-shape", "3x8")
    assert status == 2 and "not both" in err
    status, _, err = run(capsys, "compile", "--input-shape", "3x8")
    assert status == 2 and "give a MODEL" in err
    status, _, err = run(capsys, "compile", f"{models}:a", "--combine", "vote", "--input-shape", "3x8")
    assert status == 2 and "go with --ensemble" in err


@pytest.mark.slow
def test_members_with_their_own_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path, models: Path) -> None:
    out_dir = tmp_path / "mixed"
    members = [f"{models}:a", f"{models}:image"]
    shapes = ["--input-shape", "2x8", "--input-shape", "2x1x6x6"]
    status, out, err = run(
        capsys,
        "compile",
        "--ensemble",
        *members,
        *shapes,
        "--member-inputs",
        "--combine",
        "vote",
        "-o",
        out_dir,
        "--json",
    )
    assert status == 0, err
    assert json.loads(out)["eager_check"]["ok"]
    compiled = graphopt.load(out_dir)
    flat, image = torch.randn(2, 8), torch.randn(2, 1, 6, 6)
    from graphopt.fusion import combine_outputs
    from graphopt.model_loading import load_model

    with torch.no_grad():
        want = combine_outputs([load_model(members[0])(flat), load_model(members[1])(image)], "vote")
    np.testing.assert_array_equal(compiled(flat.numpy(), image.numpy()), want.numpy())


def test_member_inputs_must_be_one_per_member(capsys: pytest.CaptureFixture[str], models: Path) -> None:
    status, _, err = run(
        capsys, "compile", "--ensemble", f"{models}:a", f"{models}:b", "--input-shape", "2x8", "--member-inputs"
    )
    assert status == 2 and "1 --input-shape given for 2 member(s)" in err


def test_horizontal_fusion_on_or_off(capsys: pytest.CaptureFixture[str], tmp_path: Path, models: Path) -> None:
    members = [f"{models}:a", f"{models}:b"]
    for choice, fused in (("on", True), ("off", False)):
        out_dir = tmp_path / choice
        status, out, err = run(
            capsys,
            "compile",
            "--ensemble",
            *members,
            "--input-shape",
            "3x8",
            "--horizontal",
            choice,
            "-o",
            out_dir,
            "--json",
        )
        assert status == 0, err
        assert bool(json.loads(out)["ensemble"]["horizontal"]) is fused
