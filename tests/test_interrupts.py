"""Ctrl-C and SIGTERM: "interrupted", exit status 130 (143), at any stage, and no temporary folder left.

TVM receives the signal inside its own calls and either drops it or wraps it in its own error; the
first two tests make the build do exactly that, deterministically, by signalling the process from
inside a stand-in for the TVM compile.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from graphopt import interrupts
from graphopt.cli import main
from graphopt.targets.runtime.manifest import Manifest, TargetInfo

ROOT = Path(__file__).resolve().parent.parent
TINY = """
    import torch
    from torch import nn

    def tiny():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
"""


def _signal_inside(then):
    """A ``compile_module`` that gets SIGINT mid-call, as TVM would, and then does ``then``."""

    def compile_module(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # the handler raises here
        except KeyboardInterrupt:
            return then()
        raise AssertionError("the signal never arrived")

    return compile_module


@pytest.mark.parametrize(
    "then",
    [
        pytest.param(lambda: None, id="dropped by TVM"),
        pytest.param(lambda: (_ for _ in ()).throw(RuntimeError("TVMError: KeyboardInterrupt")), id="wrapped by TVM"),
    ],
)
def test_an_interrupt_during_the_tvm_build_stops_the_compile(capsys, tmp_path, monkeypatch, then):
    from graphopt.targets.pipeline import builder

    monkeypatch.setattr(builder, "compile_module", _signal_inside(then))
    (tmp_path / "tiny.py").write_text(textwrap.dedent(TINY))
    status = main(["compile", f"{tmp_path / 'tiny.py'}:tiny", "--input-shape", "2x8", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert (status, err) == (130, "graphopt: interrupted\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.py"]  # no artifact, no .out.tmp-*


def _put_back_as_tvm_does(signum: int) -> None:
    """Reinstall the current C-level handler of ``signum`` with libc's ``signal()``, as TVM's Z3
    prover does after each proof: the same handler, now with ``SA_RESTART``."""
    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signum, libc.signal(signum, None))


@pytest.mark.skipif(not hasattr(signal, "SIGRTMIN"), reason="the wake-up signal is a Linux real-time signal")
def test_ctrl_c_stops_a_wait_that_the_kernel_would_resume():
    busy = threading.Lock()
    busy.acquire()  # a MetaSchedule build the main thread waits for
    main = threading.main_thread().ident
    threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT)).start()  # Ctrl-C, as TVM gets it
    threading.Timer(10.0, busy.release).start()  # the build ending: without the wake-up, 10 s late
    started = time.monotonic()
    with pytest.raises(interrupts.Interrupted), interrupts.handling_interrupts():
        _put_back_as_tvm_does(signal.SIGINT)
        busy.acquire()
    assert time.monotonic() - started < 3


#: the least a manifest holds: what write_artifact completes with the library and file hashes
_MANIFEST = Manifest(model="m", target=TargetInfo("cpu"), inputs=(), outputs=())


def test_sigterm_while_writing_the_artifact_leaves_no_temporary_folder(tmp_path):
    from graphopt.targets.pipeline.artifact import write_artifact

    def export(path):
        Path(path).write_bytes(b"half a library")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)

    with pytest.raises(interrupts.Interrupted) as raised, interrupts.handling_interrupts():
        write_artifact(tmp_path / "out", _MANIFEST, export)
    assert raised.value.exit_status == 143
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_a_dead_process_staging_folder_is_cleaned_by_the_next_write(tmp_path):
    from graphopt.targets.pipeline.artifact import write_artifact

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{dead.stdout.strip()}-abc123"
    stale.mkdir()
    (stale / "model.so").write_bytes(b"left by a killed build")
    live = tmp_path / f".out.tmp-{os.getpid()}-def456"  # this process's own: not touched
    live.mkdir()
    write_artifact(tmp_path / "out", _MANIFEST, lambda path: Path(path).write_bytes(b"library") and None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]


@pytest.mark.slow
def test_ctrl_c_during_a_real_compile_is_interrupted_and_exit_130(tmp_path):
    marker = tmp_path / "loaded"
    (tmp_path / "model.py").write_text(
        "import pathlib\nfrom samples.mnist_mlp import mnist_mlp\n\n"
        f"def model():\n    pathlib.Path({str(marker)!r}).touch()\n    return mnist_mlp()\n"
    )
    command = [sys.executable, "-m", "graphopt.cli", "compile", f"{tmp_path / 'model.py'}:model"]
    process = subprocess.Popen(
        [*command, "--input-shape", "2x784", "-o", str(tmp_path / "out")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # into capture, the passes or the TVM build
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "graphopt: interrupted"
    assert time.monotonic() - started < 15
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["loaded", "model.py"]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc): the tuner's builder and runner workers."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            new = {int(c) for c in children} - found
            found |= new
            todo.extend(new)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to see the tuning workers")
def test_ctrl_c_during_tuning_stops_the_workers_and_exits_130(tmp_path):
    db = tmp_path / "db"
    command = [sys.executable, "-m", "graphopt.cli", "compile", "samples/mnist_mlp.py:mnist_mlp", "--input-shape"]
    process = subprocess.Popen(
        [*command, "1x784", "--tune", "--tune-trials", "400", "--tune-db", str(db), "-o", str(tmp_path / "out")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # MetaSchedule starts its worker pools when tuning begins: wait for them, then a moment of tuning.
    deadline = time.monotonic() + 300
    workers: set[int] = set()
    while process.poll() is None and time.monotonic() < deadline:
        workers = _descendants(process.pid)
        if len(workers) >= 2:
            break
        time.sleep(0.1)
    assert process.poll() is None and len(workers) >= 2, "tuning never started its worker processes"
    time.sleep(0.5)  # the builder's workers are busy with candidates
    workers |= _descendants(process.pid)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "graphopt: interrupted"
    assert "Traceback" not in err and "PopenPoolExecutor" not in err, err  # no worker teardown noise
    assert time.monotonic() - started < 15
    time.sleep(1.0)
    assert [pid for pid in workers if _alive(pid)] == []  # no tuning worker outlives the command
    assert not (tmp_path / "out").exists()
