"""Shared test set-up: the repo root on sys.path, so ``import samples`` works from any directory, and
TVM's out-of-bounds warning as a test failure.

TOPI logs "Fast mode segfaults when there are out-of-bounds indices" (a C++ ``LOG(WARNING)``, written
to file descriptor 2, not a Python warning) whenever it builds a ``take`` whose indices it cannot
prove in bounds. graphopt's lowering rewrites every such take (targets/lowering/safe_indices.py), so
the line appearing means a gather escaped that rewrite: generated code that may read outside a
tensor. pytest's default ``--capture=fd`` collects that descriptor per test phase; a phase whose
captured stderr holds the line fails, even if its assertions passed.

Under xdist (``make test`` runs one worker per CPU), each worker's TVM gets its share of the physical
cores unless the user set a thread count: graphopt's default is every core per process
(targets/threads.py), and two workers each running two threads on two cores made the timing checks
wait for descheduled threads (the scheduled MLP read 2.4x faster than unscheduled instead of ~200x).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = ["pytester"]

_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
if _WORKERS > 1 and not any(os.environ.get(name, "").strip() for name in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")):
    from graphopt.targets.threads import physical_cores

    os.environ["TVM_NUM_THREADS"] = str(max(1, physical_cores() // _WORKERS))
    # TVM pins its threads to cores: with one thread, every worker's main thread went to CPU 0, and the
    # workers took turns on it while the other cores idled (the same MLP check failed 1 run in 4).
    os.environ.setdefault("TVM_BIND_THREADS", "0")

OUT_OF_BOUNDS_WARNING = "Fast mode segfaults when there are out-of-bounds indices"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    this_phase = "".join(text for name, text in report.sections if name == f"Captured stderr {report.when}")
    if report.passed and OUT_OF_BOUNDS_WARNING in this_phase:
        report.outcome = "failed"
        report.longrepr = (
            f"TVM built a gather it cannot prove in bounds during {report.when}: '{OUT_OF_BOUNDS_WARNING}'"
        )


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
