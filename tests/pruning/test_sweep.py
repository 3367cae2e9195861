"""The sensitivity sweep's compile-and-measure jobs: worker processes, and timing on an RPC device."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import graphopt
from graphopt.cli import main
from graphopt.errors import InputError
from graphopt.targets.runtime.rpc import RemoteError
from samples.cnn import DigitsCNN

CNN = f"{Path(__file__).resolve().parents[2]}/samples/cnn.py:DigitsCNN"
X = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def rows(report: graphopt.pruning.SensitivityReport) -> list[tuple[int, float, int, float, float, float]]:
    return [(r.group, r.level, r.kept, r.flops, r.params, r.metric) for r in report.rows]


@pytest.mark.slow
def test_two_compile_jobs_give_the_rows_of_one_and_time_every_candidate() -> None:
    model = DigitsCNN().eval()
    serial = graphopt.sensitivity(model, X, levels=(0.5,), measure=True)
    parallel = graphopt.sensitivity(model, X, levels=(0.5,), measure=True, jobs=2)
    assert rows(parallel) == rows(serial) and len(parallel.rows) == 2
    assert parallel.baseline_latency_ms is not None and parallel.baseline_latency_ms > 0
    assert all(r.latency_ms is not None and r.latency_ms > 0 for r in parallel.rows)


def test_bad_jobs_and_unreachable_servers_fail_before_any_compile(capsys) -> None:
    model = DigitsCNN().eval()
    with pytest.raises(InputError, match="jobs must be a positive integer, got 0"):
        graphopt.sensitivity(model, X, levels=(0.5,), measure=True, jobs=0)
    with pytest.raises(RemoteError, match=re.escape("cannot reach the RPC server at 127.0.0.1:1")):
        graphopt.sensitivity(model, X, levels=(0.5,), measure=True, rpc="127.0.0.1:1")
    assert main(["sensitivity", CNN, "--input-shape", "1x1x28x28", "--jobs", "2"]) == 2
    assert "--jobs and --rpc apply to --measure" in capsys.readouterr().err


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@pytest.fixture
def rpc_server() -> Iterator[str]:
    """A TVM RPC server on a free local port, as a remote device would run it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--port-end", str(port + 1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180  # importing TVM takes a while on a loaded machine
        while not _listening(port):
            if time.monotonic() > deadline:
                pytest.fail("the RPC server did not start within 180 s")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_the_cli_times_every_candidate_on_an_rpc_server(capsys, rpc_server) -> None:
    argv = ["sensitivity", CNN, "--input-shape", "1x1x28x28", "--levels", "0.5"]
    status = main([*argv, "--measure", "--jobs", "2", "--rpc", rpc_server, "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    report = json.loads(out)
    assert report["baseline_latency_ms"] > 0 and len(report["rows"]) == 2
    assert all(row["latency_ms"] > 0 for row in report["rows"])
