"""TVM's thread pool runs one thread per physical core unless the user set a count (targets/threads.py):
TVM's own default halves the logical CPUs on x86, which on a VM with one thread per core left half the
cores idle (the digits CNN 46 us per call instead of 16.6 us on a 2-vCPU AMD EPYC)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphopt.targets import threads


def fake_topology(root: Path, cores_of_cpus: list[int]) -> Path:
    """A ``/sys/devices/system/cpu`` with one entry per logical CPU, CPU i on core ``cores_of_cpus[i]``."""
    for cpu, core in enumerate(cores_of_cpus):
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


def test_two_hardware_threads_per_core_count_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: [0, 1, 2, 3])
    assert threads.physical_cores(fake_topology(tmp_path, [0, 0, 1, 1])) == 2


def test_one_thread_per_core_counts_every_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: [0, 1])
    assert threads.physical_cores(fake_topology(tmp_path, [0, 1])) == 2


def test_only_the_cpus_the_process_may_use_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: [2, 3])  # taskset to two threads of one core
    assert threads.physical_cores(fake_topology(tmp_path, [0, 0, 1, 1])) == 1


def test_unreadable_topology_counts_logical_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "usable_cpus", lambda: [0, 1, 2])
    assert threads.physical_cores(tmp_path / "missing") == 3


def test_the_users_count_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVM_NUM_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.runtime_threads() == 3
    monkeypatch.delenv("TVM_NUM_THREADS")
    assert threads.runtime_threads() == 5  # TVM reads OMP_NUM_THREADS next
    threads.configure_default_threads()
    assert "TVM_NUM_THREADS" not in os.environ


def test_unset_count_becomes_the_physical_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TVM_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads.configure_default_threads()
    assert os.environ["TVM_NUM_THREADS"] == str(threads.physical_cores())


def test_a_fresh_process_runs_tvm_on_every_physical_core() -> None:
    """The pool TVM creates after ``import graphopt.targets``, without either variable set, has one
    thread per physical core (TVM alone: half the logical CPUs on x86)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    script = (
        "import graphopt.targets, tvm\n"
        "from graphopt.targets.threads import physical_cores\n"
        "print(tvm.get_global_func('runtime.NumThreads')(), physical_cores())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    pool, cores = result.stdout.split()
    assert pool == cores
