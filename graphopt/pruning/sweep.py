"""Compile and time a sweep's candidate graphs: in parallel worker processes, and on this machine
or on a remote device through TVM RPC.

A ``torch.fx.GraphModule`` does not pickle, so each candidate goes to its worker as a
``torch.export`` ``.pt2`` file (with its example inputs); the worker captures and compiles it
for the target into an artifact folder and hands back the folder. The timing is then done here:

- locally, one artifact at a time and interleaved round by round (``time_interleaved``): timed in
  parallel the candidates would steal each other's cores, and a load spike would hit whichever
  one happened to be running;
- on a remote device (``rpc="HOST:PORT"`` for a server, ``"KEY@TRACKER:PORT"`` for a tracker's
  devices), each artifact is uploaded and timed there with TVM's ``time_evaluator``, so the
  figures are the device's own; one at a time per device (a tracker's servers in parallel).

>>> with CandidateSweep("cpu", jobs=4) as sweep:
...     for graph in candidates:
...         sweep.submit(graph)       # exported now, compiled in a worker while the caller goes on
...     milliseconds = sweep.latencies()
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from graphopt.errors import GraphoptError, InputError, first_line
from graphopt.ir import Graph


def time_interleaved(models: Sequence[Any], inputs: Sequence[Sequence[Any]], *, rounds: int = 5) -> list[float]:
    """Median milliseconds per run of each compiled model, timed round-robin after a warm-up call."""
    for model, arrays in zip(models, inputs, strict=True):
        model(*arrays)
    samples: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for times, model, arrays in zip(samples, models, inputs, strict=True):
            times.extend(model.time(*arrays, number=20, repeat=1))
    return [1000 * statistics.median(times) for times in samples]


def _compile_program(program_path: str, example_inputs: tuple[Any, ...], out_dir: str, target: str) -> str:
    """Worker side: load the exported candidate, compile it for ``target`` into ``out_dir``."""
    import torch

    from graphopt.api import compile as compile_model
    from graphopt.capture import capture

    graph = capture(torch.export.load(program_path), example_inputs)
    compile_model(graph, graph.example_inputs, target=target, out_dir=out_dir)
    return out_dir


class CandidateSweep:
    """Candidates submitted one by one, compiled by ``jobs`` worker processes, timed by ``latencies``."""

    def __init__(self, target: str = "cpu", *, jobs: int = 1, rpc: str | None = None, rounds: int = 5) -> None:
        if not isinstance(jobs, int) or jobs < 1:
            raise InputError(f"jobs must be a positive integer, got {jobs!r}")
        self.target, self.jobs, self.rpc, self.rounds = target, jobs, rpc, rounds
        self.devices = 1
        if rpc is not None:
            from graphopt.api import rpc_devices

            self.devices = rpc_devices(rpc)  # a bad or unreachable address fails now, before any compile
        self._scratch = tempfile.TemporaryDirectory(prefix="graphopt-sweep-")
        self._pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
        self._pending: list[tuple[Future[str] | str, list[Any]]] = []

    def __enter__(self) -> CandidateSweep:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._scratch.cleanup()

    def submit(self, graph: Graph) -> None:
        """Queue one candidate: exported to a ``.pt2`` and compiled in a worker (or here with ``jobs=1``)."""
        folder = Path(self._scratch.name) / f"candidate{len(self._pending)}"
        inputs = [t.numpy() for t in graph.example_inputs]
        if self._pool is None:
            from graphopt.api import compile as compile_model

            compile_model(graph, graph.example_inputs, target=self.target, out_dir=folder)
            self._pending.append((str(folder), inputs))
            return
        from graphopt.commands.optimize import save_program

        program = folder.with_suffix(".pt2")
        save_program(graph, program)
        example = tuple(t.detach().clone() for t in graph.example_inputs)
        future = self._pool.submit(_compile_program, str(program), example, str(folder), self.target)
        self._pending.append((future, inputs))

    def latencies(self) -> list[float]:
        """Median milliseconds per run of every submitted candidate, in submission order."""
        folders = []
        for job, _ in self._pending:
            try:
                folders.append(job.result() if isinstance(job, Future) else job)
            except GraphoptError:
                raise
            except Exception as error:
                raise GraphoptError(f"compiling a sweep candidate failed: {first_line(error)}") from error
        inputs = [arrays for _, arrays in self._pending]
        if self.rpc is None:
            from graphopt.api import load

            return time_interleaved([load(f) for f in folders], inputs, rounds=self.rounds)
        from graphopt.api import time_remote

        rpc = self.rpc

        def remote(item: tuple[str, list[Any]]) -> float:
            return 1000 * time_remote(item[0], item[1], rpc, number=20, repeat=self.rounds)

        with ThreadPoolExecutor(self.devices) as threads:
            return list(threads.map(remote, zip(folders, inputs, strict=True)))
