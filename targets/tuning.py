"""MetaSchedule tuning for CPU with a persistent database that starts from the default schedules.

``tune_cpu(mod, target, trials=64)`` tunes every fused TIR function of ``mod`` that the database
does not know yet and returns the module with each function scheduled by its best record.

* The database is a MetaSchedule ``JSONDatabase`` in ``~/.cache/graphopt/tuning/<target-hash>/``
  (``tune_db=`` overrides it). Workloads are keyed by the structure of the TIR function (weights
  are arguments, not part of it), so a second compile of the same model, or of another model with
  the same layer shapes, finds the records and runs no trial.
* Before any trial, the default schedule of each new workload (targets/schedule_cpu.py) is measured
  by MetaSchedule's own runner and committed as a record. The best record wins, so tuning with a
  small budget is never slower than not tuning, as far as the runner can measure.
* A rich progress bar counts measured candidates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import dlight
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from .schedule_cpu import default_rules, prepare_cpu_module, schedule_cpu

DEFAULT_DB_ROOT = Path.home() / ".cache" / "graphopt" / "tuning"
TRIALS_PER_ROUND = 16


def database_dir(target: Target, tune_db: str | os.PathLike | None = None) -> Path:
    """Where records for ``target`` live: ``tune_db`` if given, else one folder per target."""
    if tune_db is not None:
        return Path(tune_db)
    key = hashlib.sha256(json.dumps(str(target), sort_keys=True).encode()).hexdigest()[:16]
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


def seed_default_schedules(tasks: list, target: Target, database: ms.database.Database) -> None:
    """Measure the default schedule of each task the way MetaSchedule's runner measures candidates
    (same evaluator settings, built and run in this process: no worker start-up) and commit it as
    a tuning record, so tuning can only improve on it."""
    for task in tasks:
        func = task.dispatched[0]["main"]
        with target:
            space = dlight.base.transform._apply_rules(func, target, default_rules(), False)
        if not space:
            continue
        sch = space[0]
        args = ms.arg_info.ArgInfo.from_prim_func(func)
        library = tvm.compile(sch.mod, target)
        tensors = [tvm.runtime.tensor(np.random.rand(*[int(d) for d in a.shape]).astype(a.dtype)) for a in args]
        timer = library.mod.time_evaluator(library.mod.entry_name or "main", tvm.cpu(), **EVALUATOR)
        run_secs = [tvm.tirx.FloatImm("float32", t) for t in timer(*tensors).results]
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run_secs, target, args))


def _small_search() -> ms.search_strategy.EvolutionarySearch:
    """Evolutionary search sized for budgets of tens of trials on a small machine (TVM's defaults,
    512 candidates evolved 4 times per round, take minutes per round on 2 cores)."""
    return ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=16, genetic_num_iters=2)


@derived_object
class _ProgressCallback(ms.measure_callback.PyMeasureCallback):
    def __init__(self, advance) -> None:
        self.advance = advance

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results) -> None:
        self.advance(len(runner_results))


def tune_cpu(
    mod: tvm.IRModule,
    target: Target,
    *,
    trials: int = 64,
    seconds: float | None = None,
    tune_db: str | os.PathLike | None = None,
    progress: bool = True,
) -> tvm.IRModule:
    """Tune ``mod`` for ``target`` within ``trials`` measured candidates (and ``seconds`` if given).

    Example::

        mod = tune_cpu(mod, host_target(), trials=32)   # second call: no trials, records reused
        exe = tvm.compile(mod, host_target())
    """
    if not any(isinstance(f, tvm.tirx.PrimFunc) for _, f in mod.functions_items()):
        mod = prepare_cpu_module(mod, target)
    db_dir = database_dir(target, tune_db)
    database = open_database(db_dir)
    tasks = new_tasks(mod, target, database)
    if tasks:
        seed_default_schedules(tasks, target, database)
        _search(tasks, target, database, trials, seconds, progress)
    with target, database:
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    return schedule_cpu(mod, target)


def _search(tasks: list, target: Target, database, trials: int, seconds: float | None, progress: bool) -> None:
    from rich.progress import Progress

    for name in ("tvm.s_tir.meta_schedule", "tvm.meta_schedule"):
        logging.getLogger(name).setLevel(logging.WARNING)

    contexts, weights = [], []
    with tempfile.TemporaryDirectory(prefix="graphopt-tune-") as logs:
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            tasks, logs, strategy=_small_search(), num_threads=1
        )
        deadline = time.monotonic() + seconds if seconds else None
        with Progress(disable=not progress, transient=True) as bar:
            job = bar.add_task(f"tuning {len(tasks)} workloads", total=trials)
            callbacks = [
                *ms.measure_callback.MeasureCallback.create("default"),
                _ProgressCallback(lambda n: bar.advance(job, n)),
            ]
            done = 0
            while done < trials and (deadline is None or time.monotonic() < deadline):
                budget = min(trials - done, TRIALS_PER_ROUND) if deadline else trials - done
                ms.tune.tune_tasks(
                    tasks=contexts,
                    task_weights=weights,
                    work_dir=logs,
                    max_trials_global=budget,
                    num_trials_per_iter=min(budget, TRIALS_PER_ROUND),
                    builder=ms.builder.LocalBuilder(timeout_sec=120),
                    runner=_measure_runner(),
                    database=database,
                    measure_callbacks=callbacks,
                )
                done += budget
