"""Shared test set-up: the repo root on sys.path, so ``import samples`` works from any directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def cli(capsys):
    """``cli(*argv)`` runs ``graphopt *argv`` in-process -> (exit status, stdout, stderr)."""
    from graphopt.cli import main

    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def never_loaded(tmp_path):
    """A MODEL spec whose factory fails if it is ever called: an error about anything else proves
    that the check ran before the model was loaded."""
    path = tmp_path / "never_loaded.py"
    path.write_text("def model():\n    raise RuntimeError('the model was loaded')\n")
    return f"{path}:model"
