"""``graphopt distill`` as a user types it: the table, the saved student, one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from graphopt.cli import main
from tests.compression.tiny_models import agreement, tiny_student

TINY = Path(__file__).resolve().parent / "tiny_models.py"
TEACHER, STUDENT = f"{TINY}:tiny_mlp", f"{TINY}:tiny_student"
DATA, EVAL = f"{TINY}:train_data", f"{TINY}:agreement"


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["distill", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_distill_trains_the_student_keeps_its_best_epoch_and_saves_it(capsys, tmp_path: Path) -> None:
    out = tmp_path / "student.pt"
    status, text, _ = run(
        capsys, TEACHER, STUDENT, "--data", DATA, "--eval", EVAL, "--epochs", "4", "--lr", "1e-2", "-o", out, "--json"
    )
    assert status == 0
    report = json.loads(text)
    assert len(report["losses"]) == 4 and report["losses"][-1] < report["losses"][0]
    assert report["student_parameters"] < report["teacher_parameters"]
    assert report["student_score"] == max(report["student_scores"])  # the best epoch's weights are kept
    student = tiny_student()
    student.load_state_dict(torch.load(out, weights_only=True))
    assert agreement(student) == pytest.approx(report["student_score"])
    assert agreement(student) > agreement(tiny_student()) + 10  # it learned the teacher's answers


def test_the_table_names_teacher_and_student(capsys) -> None:
    status, text, _ = run(capsys, TEACHER, STUDENT, "--data", DATA, "--epochs", "1", "--alpha", "0.5")
    assert status == 0
    assert "T=4, alpha=0.5" in text and "teacher" in text and "student" in text and "1 epoch(s)" in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--student", f"{TINY}:wrong_student"], r"the student's outputs have shape \(2, 3\), the teacher's \(2, 5\)"),
        (["--data", f"{TINY}:raising_data"], "--data raised RuntimeError: the data server is down"),
        (["--data", f"{TINY}:nope"], f"--data {TINY}:nope: .* has no function 'nope'"),
        (["--alpha", "1.5"], r"alpha in \[0, 1\], got temperature=4.0, alpha=1.5"),
        (["--patience", "2"], "--patience needs --eval"),
        (["--shift", "2"], r"augment raised InputError on batch 0: random_shift expects N x C x H x W images, got"),
    ],
)
def test_bad_input_is_a_one_line_error(capsys, options: list[str], message: str) -> None:
    student = options[1] if options[0] == "--student" else STUDENT
    rest = options[2:] if options[0] == "--student" else options
    data = [] if "--data" in rest else ["--data", DATA]
    status, _, err = run(capsys, TEACHER, student, *data, "--epochs", "1", *rest)
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
