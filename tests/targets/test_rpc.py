"""A compiled model run through TVM's own RPC tracker and server, both started here on loopback,
and a model tuned with MetaSchedule's RPC runner, its candidates measured on such a server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import tvm
from torch import nn

import graphopt
from graphopt.cli import main
from graphopt.errors import BuildError, InputError
from graphopt.targets.cpu import tuning
from graphopt.targets.cpu.schedule import host_target
from graphopt.targets.runtime.rpc import RemoteError, bench_remote, run_remote, time_remote, tracker_servers
from samples.mnist_mlp import mnist_mlp
from tests.targets.conftest import TOLERANCE

KEY = "graphopt-loopback"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(*args: str, log: Path | None = None) -> subprocess.Popen:
    output = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (the child writes it)
    try:
        return subprocess.Popen([sys.executable, "-m", *args], stdout=output, stderr=output, start_new_session=True)
    finally:
        if log is not None:
            output.close()


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the RPC process exited early"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def _stop(processes: list[subprocess.Popen]) -> None:
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
def tracker_and_server():
    """A tracker, a server registered with it under KEY, and a standalone server; always stopped."""
    tracker_port, server_port, standalone_port = _free_port(), _free_port(), _free_port()
    processes: list[subprocess.Popen] = []
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
        _stop(processes)


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


def test_a_packed_library_is_unpacked_before_the_upload(tracker_and_server, tmp_path) -> None:
    _, server = tracker_and_server
    model = mnist_mlp()
    graphopt.compile(model, torch.randn(8, 784), passes="O0", out_dir=tmp_path / "packed", pack_library=True)
    x = torch.randn(8, 784, generator=torch.Generator().manual_seed(3))
    outputs = run_remote(tmp_path / "packed", server, [x.numpy()])
    expected = model(x).detach().numpy()
    assert abs(outputs - expected).max() / abs(expected).max() <= TOLERANCE


# Tuning through the tracker: MetaSchedule's RPCRunner measures every candidate on the server.

TUNE_KEY = "graphopt-test"


@pytest.fixture(scope="module")
def tuning_tracker(tmp_path_factory):
    """A tracker and one server under TUNE_KEY that logs each module it loads; (tracker, log path)."""
    tracker_port, server_port = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("rpc-tuning") / "server.log"
    processes: list[subprocess.Popen] = []
    try:
        tracker = _start("tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(tracker_port),
                         "--port-end", str(tracker_port + 1), "--silent")  # fmt: skip
        processes.append(tracker)
        _wait_for_port(tracker_port, tracker)
        server = _start("tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(server_port),
                        "--port-end", str(server_port + 1), "--tracker", f"127.0.0.1:{tracker_port}",
                        "--key", TUNE_KEY, log=log)  # fmt: skip
        processes.append(server)
        _wait_for_port(server_port, server)
        address = f"{TUNE_KEY}@127.0.0.1:{tracker_port}"
        deadline = time.monotonic() + 60
        while True:  # the server registers with the tracker a moment after it listens
            try:
                tracker_servers(address)
                break
            except RemoteError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"127.0.0.1:{tracker_port}", log
    finally:
        _stop(processes)


def linear_relu() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 16), nn.ReLU()).eval(), torch.randn(4, 32)


def _remote_loads(log: Path) -> int:
    """Modules the server loaded that the tuning sent (bench uploads are named graphopt_<sha>.so)."""
    return sum("load_module" in line and "graphopt_candidate.so" in line for line in log.read_text().splitlines())


@pytest.mark.slow
def test_tuning_measures_candidates_on_the_remote_server(tuning_tracker, tmp_path: Path) -> None:
    tracker, log = tuning_tracker
    model, x = linear_relu()
    before = _remote_loads(log)
    compiled = graphopt.compile(
        model, x, passes="O0", tune=True, tune_trials=2, tune_db=tmp_path, tune_rpc=f"{TUNE_KEY}@{tracker}"
    )
    records = (tmp_path / "database_tuning_record.json").read_text().splitlines()
    loads = _remote_loads(log) - before
    assert len(records) >= 2  # the seeded default schedule and at least one tuned candidate
    assert loads >= 3 and loads >= len(records)  # the seed and both trials ran on the server
    assert compiled.manifest.build["tune_rpc"] == f"{TUNE_KEY}@{tracker}"
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(compiled(x.numpy()) - expected).max() / abs(expected).max() <= TOLERANCE

    # Every workload is in the database now: the next compile runs nothing and needs no tracker.
    dead = f"{TUNE_KEY}@127.0.0.1:{_free_port()}"
    again = graphopt.compile(model, x, passes="O0", tune=True, tune_trials=2, tune_db=tmp_path, tune_rpc=dead)
    assert (tmp_path / "database_tuning_record.json").read_text().splitlines() == records
    assert _remote_loads(log) - before == loads
    assert abs(again(x.numpy()) - expected).max() / abs(expected).max() <= TOLERANCE


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:9190", r"'127\.0\.0\.1:9190' names no device key: write KEY@HOST:PORT"),
        ("key@127.0.0.1", r"RPC address '127\.0\.0\.1' is not HOST:PORT"),
        ("key@127.0.0.1:99999", r"is not HOST:PORT"),
        ("@127.0.0.1:9190", r"names no device key"),
    ],
)
def test_a_bad_tuning_address_is_an_input_error(address: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        tuning.tune_cpu(tvm.IRModule(), host_target(), trials=2, rpc=address)


def test_tuning_with_an_unreachable_tracker_is_a_clear_error(tmp_path: Path) -> None:
    model, x = linear_relu()
    started = time.monotonic()
    address = f"{TUNE_KEY}@127.0.0.1:{_free_port()}"
    with pytest.raises(RemoteError, match=r"^cannot reach the RPC tracker at 127\.0\.0\.1:\d+: "):
        tuning.rpc_runner(address)
    # Through build() the schedule step's error comes back from TVM as one BuildError line.
    with pytest.raises(BuildError, match=r"cannot reach the RPC tracker at 127\.0\.0\.1:\d+: ") as caught:
        graphopt.compile(model, x, passes="O0", tune=True, tune_trials=2, tune_db=tmp_path, tune_rpc=address)
    assert "\n" not in str(caught.value)
    assert time.monotonic() - started < 30  # no minute of TVM's connection retries


def test_build_checks_the_tuning_address_before_lowering() -> None:
    model, x = linear_relu()
    with pytest.raises(InputError, match="names no device key"):
        graphopt.compile(model, x, passes="O0", tune=True, tune_rpc="127.0.0.1:9190")
    with pytest.raises(InputError, match=r"needs tune=True \(--tune\)"):
        graphopt.compile(model, x, passes="O0", tune_rpc=f"{TUNE_KEY}@127.0.0.1:9190")


def test_tuning_with_a_key_the_tracker_lacks_is_a_clear_error(tracker_and_server) -> None:
    tracker, _ = tracker_and_server
    with pytest.raises(
        RemoteError, match=r"^the RPC tracker at 127\.0\.0\.1:\d+ has no server registered under key 'rasp4'"
    ):
        tuning.rpc_runner(f"rasp4@{tracker}")


def test_the_cli_checks_tune_rpc_before_loading_the_model(capsys) -> None:
    model = "no_such_file.py:model"  # the option is refused first: the missing file is never reached
    assert main(["compile", model, "--input-shape", "1x784", "--tune-rpc", f"{TUNE_KEY}@127.0.0.1:9190"]) == 2
    assert "tune_rpc (--tune-rpc) measures tuning candidates remotely: it needs tune=True (--tune)" in (
        capsys.readouterr().err
    )
    assert main(["compile", model, "--input-shape", "1x784", "--tune", "--tune-rpc", "127.0.0.1:9190"]) == 2
    assert "names no device key" in capsys.readouterr().err
    argv = ["compile", model, "--input-shape", "1x784", "--target", "arm", "--tune", "--tune-rpc", "k@h:1"]
    assert main(argv) == 2
    assert "tuning for target 'arm' needs an aarch64 machine to measure on" in capsys.readouterr().err


def test_targets_that_cannot_tune_refuse_it_before_any_work() -> None:
    from graphopt.targets import check_build_request

    for target in ("arm", "cuda"):
        with pytest.raises(InputError, match=f"tuning for target '{target}'"):
            check_build_request(target, None, {"tune": True})
