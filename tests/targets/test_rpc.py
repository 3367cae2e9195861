"""A compiled model run through TVM's own RPC tracker and server, both started here on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from graphopt.targets.rpc import RemoteError, bench_remote, run_remote, time_remote

import graphopt
from samples.mnist_mlp import mnist_mlp
from tests.targets.conftest import TOLERANCE

KEY = "graphopt-loopback"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the RPC process exited early"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def tracker_and_server():
    """A tracker, a server registered with it under KEY, and a standalone server; always stopped."""
    tracker_port, server_port, standalone_port = _free_port(), _free_port(), _free_port()
    processes = []
    try:
        tracker = _start("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(tracker_port),
                         "--port-end", str(tracker_port + 1), "--silent")  # fmt: skip
        standalone = _start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(standalone_port),
                            "--port-end", str(standalone_port + 1), "--silent")  # fmt: skip
        processes += [tracker, standalone]
        _wait_for_port(tracker_port, tracker)
        server = _start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(server_port),
                        "--port-end", str(server_port + 1), "--tracker", f"127.0.0.1:{tracker_port}",
                        "--key", KEY, "--silent")  # fmt: skip
        processes.append(server)
        _wait_for_port(standalone_port, standalone)
        _wait_for_port(server_port, server)
        yield f"127.0.0.1:{tracker_port}", f"127.0.0.1:{standalone_port}"
    finally:
        for process in processes:  # each started in its own session: stop it and its workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory):
    model = mnist_mlp()
    out_dir = tmp_path_factory.mktemp("rpc") / "mlp"
    graphopt.compile(model, torch.randn(8, 784), passes="O0", out_dir=out_dir)
    return model, out_dir


def test_runs_through_the_tracker_and_matches_eager(tracker_and_server, mlp_artifact) -> None:
    tracker, _ = tracker_and_server
    model, out_dir = mlp_artifact
    x = torch.randn(8, 784, generator=torch.Generator().manual_seed(0))
    outputs = run_remote(out_dir, tracker, [x.numpy()], key=KEY)
    expected = model(x).detach().numpy()
    assert abs(outputs - expected).max() / abs(expected).max() <= TOLERANCE


def test_bench_times_on_the_device(tracker_and_server, mlp_artifact) -> None:
    tracker, _ = tracker_and_server
    result = bench_remote(mlp_artifact[1], f"{KEY}@{tracker}", number=3, repeat=2)
    assert len(result.seconds) == 2 and all(s > 0 for s in result.seconds)
    assert result.outputs.shape == (8, 10)
    assert result.to_dict()["runs"] == 2


def test_an_in_memory_model_is_uploaded_too(tracker_and_server, mlp_artifact) -> None:
    """``graphopt bench --rpc`` times a model it compiled without writing an artifact."""
    tracker, _ = tracker_and_server
    model = mnist_mlp()
    compiled = graphopt.compile(model, torch.randn(2, 784), passes="O0")
    assert compiled.out_dir is None
    x = torch.randn(2, 784, generator=torch.Generator().manual_seed(1))
    seconds = time_remote(compiled, [x.numpy()], f"{KEY}@{tracker}", number=2, repeat=1)
    assert seconds > 0


def test_an_unreachable_server_is_a_clear_error(mlp_artifact) -> None:
    with pytest.raises(RemoteError, match=r"cannot reach the RPC server at 127\.0\.0\.1:\d+"):
        bench_remote(mlp_artifact[1], f"127.0.0.1:{_free_port()}", timeout_s=5)


def test_runs_straight_on_a_server(tracker_and_server, mlp_artifact) -> None:
    _, server = tracker_and_server
    model, out_dir = mlp_artifact
    x = torch.randn(8, 784, generator=torch.Generator().manual_seed(2))
    outputs = run_remote(out_dir, server, [x.numpy()])
    expected = model(x).detach().numpy()
    assert abs(outputs - expected).max() / abs(expected).max() <= TOLERANCE
