"""MetaSchedule tuning for CPU with a persistent database that starts from the default schedules.

``tune_cpu(mod, target, trials=64)`` tunes every fused TIR function of ``mod`` that the database
does not know yet and returns the module with each function scheduled by its best record.

* The database is a MetaSchedule ``JSONDatabase`` in ``~/.cache/graphopt/tuning/<target-hash>/``
  (``tune_db=`` overrides it). Workloads are keyed by the structure of the TIR function (weights
  are arguments, not part of it), so a second compile of the same model, or of another model with
  the same layer shapes, finds the records and runs no trial.
* Before any trial, the default schedule of each new workload (targets/cpu/schedule.py) is measured
  by MetaSchedule's own runner and committed as a record. The best record wins, so tuning with a
  small budget is never slower than not tuning, as far as the runner can measure.
* A rich progress bar counts measured candidates.
* ``rpc="KEY@TRACKER_HOST:PORT"`` measures on a remote device instead, through a TVM RPC tracker
  (``python -m tvm.exec.rpc_tracker``) and the servers registered with it under KEY
  (``python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY``), with MetaSchedule's
  ``RPCRunner``. Candidates are built here as shared libraries (the remote needs no compiler) and
  the default schedules are seeded by the same remote measurement. The tracker is checked before
  the first measurement, so a bad address or an unreachable tracker is one ``InputError`` or
  ``RemoteError`` line, not a minute of retries and failed records (a compile whose workloads are
  all in the database needs no tracker). Records measured remotely go to their own default database (the key is part of its
  hash). ``target`` must describe the remote CPU (e.g. ``mcpu``); this is the ``cpu`` target only.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib
import inspect
import json
import linecache
import logging
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import dlight
from tvm.s_tir import meta_schedule as ms
from tvm.support.popen_pool import PopenPoolExecutor, kill_child_processes
from tvm.target import Target

from graphopt import progress as progress_events
from graphopt.errors import first_line
from graphopt.targets.lowering.legalized import is_legalized
from graphopt.targets.runtime.rpc import RemoteError, parse_tracker_address, tracker_servers

from .schedule import default_rules, prepare_cpu_module, schedule_cpu
from .tuned_or_default import tuned_or_default

DEFAULT_DB_ROOT = Path.home() / ".cache" / "graphopt" / "tuning"
TRIALS_PER_ROUND = 16
# Trials go to the kernels that take this share of the model's time (worth_tuning).
COVERED_SHARE = 0.9


def database_dir(target: Target, tune_db: str | os.PathLike | None = None, *, device: str | None = None) -> Path:
    """Where records for ``target`` live: ``tune_db`` if given, else one folder per target (and per
    remote ``device`` key: records measured on a remote device are not this machine's)."""
    if tune_db is not None:
        return Path(tune_db)
    identity = str(target) if device is None else [str(target), f"rpc:{device}"]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return DEFAULT_DB_ROOT / key


def open_database(path: Path) -> ms.database.JSONDatabase:
    path.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(path), module_equality="structural")


def new_tasks(mod: tvm.IRModule, target: Target, database: ms.database.Database) -> list:
    """Extracted tasks whose workload the database has no record of."""
    tasks = ms.relax_integration.extract_tasks(mod, target)
    return [task for task in tasks if not _has_records(database, task.dispatched[0])]


def _has_records(database: ms.database.Database, mod: tvm.IRModule) -> bool:
    if not database.has_workload(mod):
        return False
    return bool(database.get_top_k(database.commit_workload(mod), 1))


EVALUATOR = {"number": 3, "repeat": 1, "min_repeat_ms": 50}


def _measure_runner() -> ms.runner.LocalRunner:
    config = ms.runner.EvaluatorConfig(**EVALUATOR, enable_cpu_cache_flush=False)
    return ms.runner.LocalRunner(evaluator_config=config, timeout_sec=120)


def rpc_runner(address: str, *, timeout_s: float = 120) -> ms.runner.RPCRunner:
    """MetaSchedule's runner for the servers registered under KEY at the tracker ``KEY@HOST:PORT``,
    one connection per server. The address and the tracker are checked first (``InputError``,
    ``RemoteError``): MetaSchedule itself would retry for a minute, then record failed runs."""
    key, host, port = parse_tracker_address(address)
    servers = tracker_servers(address, timeout_s=min(timeout_s, 10))
    config = ms.runner.RPCConfig(
        tracker_host=host, tracker_port=port, tracker_key=key, session_timeout_sec=int(timeout_s)
    )
    evaluator = ms.runner.EvaluatorConfig(**EVALUATOR, enable_cpu_cache_flush=False)
    return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator, max_workers=servers)


def import_tensor_intrinsics() -> None:
    """``import tvm.s_tir.tensor_intrin`` (MetaSchedule's VNNI/AVX-512 rules look intrinsics up by
    name) in ~2 s instead of ~20: TVMScript's ``prim_func`` calls ``inspect.stack()``, which reads
    the source of every frame and scans ``sys.modules`` for each, ~500 times. The parser only uses
    the frames and the calling line, so for the import ``inspect.stack`` gives just those."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    original = inspect.stack

    def frames_only(context: int = 1) -> list[inspect.FrameInfo]:
        frames: list[inspect.FrameInfo] = []
        frame: types.FrameType | None = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            line = linecache.getline(code.co_filename, frame.f_lineno)
            frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, [line], 0))
            frame = frame.f_back
        return frames

    inspect.stack = frames_only  # type: ignore[assignment]
    try:
        importlib.import_module("tvm.s_tir.tensor_intrin")
    finally:
        inspect.stack = original


def build_candidate(mod: Any, target: Any, _params: Any = None) -> Any:
    """MetaSchedule's default build without its ``import tvm.s_tir.tensor_intrin``: that import
    parses some 500 TVMScript functions (~20 s) in every builder worker, and the builder starts new
    workers for every batch of candidates. Candidates arrive already tensorized, so nothing here
    looks an intrinsic up."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def export_shared_library(mod: Any) -> str:
    """The builder's export for remote runs: a shared library linked here with the host compiler
    (MetaSchedule's default, a .tar, would need a compiler on the device to link it)."""
    path = os.path.join(tempfile.mkdtemp(prefix="graphopt-candidate-"), "graphopt_candidate.so")
    mod.export_library(path)
    return path


def _where(runner: Any) -> str:
    config = runner.rpc_config
    return f"{config.tracker_key}@{config.tracker_host}:{config.tracker_port}"


def _runner_error(message: str) -> str:
    """The line of a runner's error that says what failed (not "RPCRunner: An exception occurred")."""
    lines = message.splitlines()
    if len(lines) > 1 and lines[0].startswith("RPCRunner: An exception"):
        lines = lines[1:]
    return first_line(RuntimeError("\n".join(lines)))


def seed_default_schedules(
    tasks: list, target: Target, database: ms.database.Database, *, runner: Any = None
) -> dict[str, float]:
    """Measure the default schedule of each task the way MetaSchedule's runner measures candidates
    (same evaluator settings, built and run in this process: no worker start-up) and commit it as
    a tuning record, so tuning can only improve on it. With an RPC ``runner`` the schedule is built
    here and measured on the remote device by that runner, like every candidate after it.
    Returns each seeded task's mean seconds per call, by task name."""
    seconds: dict[str, float] = {}
    for task in tasks:
        func = task.dispatched[0]["main"]
        with target:
            space = dlight.base.transform._apply_rules(func, target, default_rules(), False)
        if not space:
            continue
        sch = space[0]
        args = ms.arg_info.ArgInfo.from_prim_func(func)
        library = tvm.compile(sch.mod, target)
        if runner is not None:
            run_secs = _measure_remotely(library, args, runner, task.task_name)
        else:
            tensors = [tvm.runtime.tensor(np.random.rand(*[int(d) for d in a.shape]).astype(a.dtype)) for a in args]
            timer = library.mod.time_evaluator(library.mod.entry_name or "main", tvm.cpu(), **EVALUATOR)
            run_secs = [tvm.tirx.FloatImm("float32", t) for t in timer(*tensors).results]
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run_secs, target, args))
        seconds[task.task_name] = float(np.mean([float(t.value) for t in run_secs]))
    return seconds


def worth_tuning(tasks: list, seconds: dict[str, float], share: float = COVERED_SHARE) -> list:
    """The tasks that take ``share`` of the model's time with their default schedules (seconds per
    call times calls), most time first: the ones trials go to. MetaSchedule's task scheduler takes
    tasks round-robin in the order given, so in extraction order a small budget went to whichever
    kernels came first (96 trials on EfficientNet-B0: 6 kernels of 63, 17% of its kernel time, not
    its most expensive one)."""
    cost = {id(task): seconds.get(task.task_name, 0.0) * float(task.weight) for task in tasks}
    ordered = sorted(tasks, key=lambda task: cost[id(task)], reverse=True)
    total = sum(cost.values())
    chosen: list = []
    covered = 0.0
    for task in ordered:
        if chosen and covered >= share * total:
            break
        chosen.append(task)
        covered += cost[id(task)]
    return chosen


def _measure_remotely(library: Any, args: list, runner: Any, name: str) -> list:
    with tempfile.TemporaryDirectory(prefix="graphopt-seed-") as scratch:
        path = os.path.join(scratch, "graphopt_candidate.so")
        library.export_library(path)
        (future,) = runner.run([ms.runner.RunnerInput(path, "cpu", args)])
        result = future.result()
    if result.error_msg:
        raise RemoteError(
            f"measuring the default schedule of '{name}' on {_where(runner)} failed: {_runner_error(result.error_msg)}"
        )
    return [tvm.tirx.FloatImm("float32", float(getattr(t, "value", t))) for t in result.run_secs]


def _small_search() -> ms.search_strategy.EvolutionarySearch:
    """Evolutionary search sized for budgets of tens of trials on a small machine (TVM's defaults,
    512 candidates evolved 4 times per round, take minutes per round on 2 cores)."""
    return ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=16, genetic_num_iters=2)


@derived_object
class _ProgressCallback(ms.measure_callback.PyMeasureCallback):
    def __init__(self, advance) -> None:
        self.advance = advance
        self.measured = 0
        self.errors: list[str] = []

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        self.measured += len(runner_results)
        self.errors += [str(r.error_msg) for r in runner_results if r.error_msg]
        self.advance(len(runner_results))


@contextlib.contextmanager
def _bar(message: str, total: int, *, shown: bool) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` for measured candidates: a bar in the CLI's status line (``graphopt.progress``
    listeners), else rich's own bar on a terminal (the Python API), else nothing."""
    if shown and progress_events.is_listened():
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            progress_events.count(message, done, total)

        progress_events.count(message, 0, total)
        yield advance
        return
    from rich.progress import Progress

    with Progress(disable=not shown, transient=True) as bar:
        job = bar.add_task(message, total=total)
        yield lambda n: bar.advance(job, n)


def tune_cpu(
    mod: tvm.IRModule,
    target: Target,
    *,
    trials: int = 64,
    seconds: float | None = None,
    tune_db: str | os.PathLike | None = None,
    progress: bool = True,
    rpc: str | None = None,
    rpc_timeout_s: float = 120,
    outcome: dict[str, Any] | None = None,
) -> tvm.IRModule:
    """Tune ``mod`` for ``target`` within ``trials`` measured candidates (and ``seconds`` if given),
    measured here, or with ``rpc="KEY@TRACKER_HOST:PORT"`` on the devices of a TVM RPC tracker.
    Measured here, the tuned module is returned only if the whole model runs faster with it than with
    the default schedules (``tuned_or_default``; ``outcome`` receives which was kept and the times).

    Example::

        mod = tune_cpu(mod, host_target(), trials=32)   # second call: no trials, records reused
        exe = tvm.compile(mod, host_target())
        mod = tune_cpu(mod, board_target, trials=32, rpc="rasp4@10.0.0.2:9190")
    """
    key = parse_tracker_address(rpc)[0] if rpc is not None else None  # a bad address fails first
    if not is_legalized(mod):
        mod = prepare_cpu_module(mod, target)
    db_dir = database_dir(target, tune_db, device=key)
    database = open_database(db_dir)
    tasks = new_tasks(mod, target, database)
    if tasks:
        runner = rpc_runner(rpc, timeout_s=rpc_timeout_s) if rpc is not None else None
        measured = seed_default_schedules(tasks, target, database, runner=runner)
        _search(worth_tuning(tasks, measured), target, database, trials, seconds, progress, runner=runner)
    with target, database:  # tuned first: schedule_cpu updates the module it is given, and mod must stay unscheduled
        tuned = schedule_cpu(relax.transform.MetaScheduleApplyDatabase()(mod), target)
    if rpc is not None:  # the whole model would have to run on the remote device to be compared
        return tuned
    return tuned_or_default(tuned, schedule_cpu(mod, target), target, outcome)


@contextlib.contextmanager
def _worker_pools_closed(runner: Any) -> Iterator[None]:
    """Shut MetaSchedule's worker-process pools down when tuning ends, however it ends.

    TVM's ``PopenPoolExecutor`` asks to be shut down explicitly: the runner keeps its pool for
    life, and a Ctrl-C inside a build leaves that build's pool as a local of the interrupted frame.
    Left to the garbage collector, ``__del__`` may run on one of the pool's own threads after the
    command has said "interrupted", and prints a "cannot join current thread" traceback. So the
    runner's pool is closed here, and after an exception every pool still open as well.
    """
    try:
        yield
    except BaseException:
        # type(), not isinstance: isinstance reads __class__, which warns on some torch objects
        for pool in [o for o in gc.get_objects() if issubclass(type(o), PopenPoolExecutor)]:
            _shut_down(pool)
        raise
    finally:
        _shut_down(getattr(runner, "pool", None))


def _shut_down(pool: PopenPoolExecutor | None, *, within_s: float = 10.0) -> None:
    """Stop a pool's worker processes and threads, without TVM's ``shutdown``.

    TVM's ``shutdown`` kills each worker with ``PopenWorker.kill`` while holding the pool's lock, and a
    pool thread whose worker has died calls the same ``kill``: the two race on the worker's process
    (``'NoneType' object has no attribute 'kill'``), the lock stays held and ``_shutdown`` unset, and
    at exit ``__del__`` calls ``shutdown`` again and waits for that lock forever (1 Ctrl-C in 3). A
    Ctrl-C inside LocalBuilder's own ``shutdown`` leaves the lock held the same way. So queued
    candidates are cancelled (or the threads would go on building them), the pool is marked shut
    down (``__del__`` then does nothing), and the worker processes are killed, again if a thread
    started one for the candidate it had taken, until the threads have seen their pipes close and
    ended; only then is each worker cleaned up, with no thread left to race.
    """
    if pool is None or getattr(pool, "_shutdown", True):
        return
    pool._shutdown = True
    threads = pool._threadpool
    threads.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + within_s
    while True:
        for worker in list(pool._worker_map.values()):
            process = worker._proc  # read once: a pool thread may set it to None meanwhile
            if process is not None and process.poll() is None:
                with contextlib.suppress(Exception):
                    kill_child_processes(process.pid)
                    process.kill()
        running = [thread for thread in list(threads._threads) if thread.is_alive()]
        if not running or time.monotonic() > deadline:
            break
        running[0].join(0.05)
    if not running:
        for worker in list(pool._worker_map.values()):
            with contextlib.suppress(Exception):
                worker.kill()  # closes the pipes and reaps the process


def _search(
    tasks: list, target: Target, database, trials: int, seconds: float | None, progress: bool, *, runner: Any = None
) -> None:
    """The trials: measured by the local runner, or by ``runner`` (an ``RPCRunner``) remotely."""
    import_tensor_intrinsics()  # before TuneContext imports it the slow way
    remote = runner is not None
    builder = ms.builder.LocalBuilder(
        timeout_sec=120, f_build=build_candidate, f_export=export_shared_library if remote else None
    )
    measure = runner if remote else _measure_runner()

    for name in ("tvm.s_tir.meta_schedule", "tvm.meta_schedule"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        # MetaSchedule's logging set-up names every handler of its logger in a dictConfig and fails
        # on one without a name (e.g. pytest's capture handlers, left there by an earlier tuning).
        for handler in [h for h in logger.handlers if h.get_name() is None]:
            logger.removeHandler(handler)

    contexts, weights = [], []
    with _worker_pools_closed(measure), tempfile.TemporaryDirectory(prefix="graphopt-tune-") as logs:
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, logs, strategy=_small_search(), num_threads=1
        )
        deadline = time.monotonic() + seconds if seconds else None
        with _bar(f"tuning {len(tasks)} workloads", trials, shown=progress) as advance:
            counter = _ProgressCallback(advance)
            callbacks = [*ms.measure_callback.MeasureCallback.create("default"), counter]
            done, turn = 0, 0
            while contexts and done < trials and (deadline is None or time.monotonic() < deadline):
                # One task per round, in the order given (most time first), then around again: each
                # tune_tasks call starts a new task scheduler, whose round robin begins at its first task.
                budget = min(trials - done, TRIALS_PER_ROUND)
                index = turn % len(contexts)
                ms.tune.tune_tasks(
                    tasks=[contexts[index]],
                    task_weights=[weights[index]],
                    work_dir=logs,
                    max_trials_global=budget,
                    num_trials_per_iter=budget,
                    builder=builder,
                    runner=measure,
                    database=database,
                    measure_callbacks=callbacks,
                )
                done, turn = done + budget, turn + 1
    if remote and counter.measured and len(counter.errors) == counter.measured:
        # The default schedules ran remotely, so the device (or the way to it) broke during tuning.
        raise RemoteError(f"every candidate failed on {_where(runner)}: {_runner_error(counter.errors[0])}")
