"""CPU benchmark: graphopt against the tools a user would pick instead, in one reproducible run.

    nice python benchmarks/run_suite.py --threads 2 --tune-trials 16 --out benchmarks/results/cpu.md

Every (model, runner) pair compiles in its own worker process, one at a time (so compile times are
not contended), then all runners of a model are timed interleaved: each round asks every worker in
turn for a batch of runs, so load from other users of a shared machine hits every runner alike.
The latency is the median of all runs. Outputs are compared with torch eager on the same input.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Float runners must match eager within this relative error (float32 reassociation over K ~ 5000
# terms is ~1e-6; 1e-4 leaves room for inductor/ORT's fused kernels and flags real mismatches).
FLOAT_TOLERANCE = 1e-4
INT8_TOLERANCE = 5e-2
ROUND_SECONDS = 0.15
# After a batch, TVM's and OpenMP's worker threads spin-wait for a while before sleeping; on a
# 2-core machine that steals the cores from the next runner (torch eager ran 10-100x slower right
# after a TVM batch). Each batch starts after this pause, when the other workers are asleep.
SETTLE_SECONDS = 0.3


def workloads(options: dict[str, Any]) -> dict[str, Any]:
    """The workload registry the run draws from: ``options["workloads"]`` names its module
    (benchmarks/models.py by default; benchmarks/third_party.py passes its own)."""
    import importlib

    return importlib.import_module(options.get("workloads", "benchmarks.models")).WORKLOADS


def use_checkout(root: str) -> None:
    """Import graphopt from another checkout of the repo (``--baseline``: a build of an earlier commit
    timed beside this one in the same run): the editable install's finder is pointed at ``root``."""
    repo = str(ROOT)
    for name, module in list(sys.modules.items()):
        if name.startswith("__editable___graphopt") and hasattr(module, "MAPPING"):
            module.MAPPING = {k: v.replace(repo, root, 1) for k, v in module.MAPPING.items()}
    sys.path.insert(0, root)  # ahead of this checkout, whose graphopt/ the path finder would find first
    if any(name == "graphopt" or name.startswith("graphopt.") for name in sys.modules):
        raise RuntimeError("graphopt was imported before use_checkout")


def _worker(conn: Any, workload: str, runner: str, options: dict[str, Any]) -> None:
    if options.get("checkout"):
        use_checkout(options["checkout"])
    import torch

    from benchmarks.runners import RUNNERS

    torch.set_num_threads(options["threads"])
    try:
        model, x = workloads(options)[workload].build()
        start = time.perf_counter()
        run, output = RUNNERS[options.get("as_runner", runner)][0](model, x, options)
        compile_s = time.perf_counter() - start
        for _ in range(3):
            run()
        conn.send(("ready", compile_s, np.asarray(output)))
    except Exception as error:  # a tool failing on a model is a result, recorded in the table
        conn.send(("error", f"{type(error).__name__}: {str(error).strip().splitlines()[0][:150]}", None))
        return
    while (count := conn.recv()) is not None:
        run()  # untimed: wakes this runner's own thread pool after the pause
        times = []
        for _ in range(count):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        conn.send(times)


def _peak_gflops(conn: Any, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    times = []
    for _ in range(12):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    conn.send(2 * 2048**3 / float(np.median(times[2:])) / 1e9)


def _finish(process: Any) -> None:
    """Wait for a worker to exit, and kill it if it does not: a worker left behind (a thread pool
    or compile pool keeping it alive) spins on the cores while the next model is timed, which made
    torch eager look 15x slower on ResNet-18 late in a suite run."""
    process.join(timeout=10)
    if process.is_alive():
        print(f"  (a worker did not exit: killed pid {process.pid})", flush=True)
        process.kill()
        process.join(timeout=10)


def in_worker(target: Any, *args: Any) -> tuple[Any, Any]:
    parent, child = mp.get_context("spawn").Pipe()
    process = mp.get_context("spawn").Process(target=target, args=(child, *args), daemon=True)
    process.start()
    return process, parent


def model_flops(workload: str, options: dict[str, Any] | None = None) -> int:
    from graphopt.capture import capture

    model, x = workloads(options or {})[workload].build()
    return capture(model, (x,)).stats().flops


def relative_error(expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.shape != actual.shape:
        return float("inf")
    return float(np.abs(expected - actual).max() / max(np.abs(expected).max(), 1e-30))


def bench_workload(workload: str, runners: list[str], options: dict[str, Any], rounds: int) -> dict[str, dict]:
    """Compile every runner (one at a time), then time them interleaved; results per runner."""
    results: dict[str, dict] = {}
    workers = {}
    reference = None
    for runner in runners:
        from benchmarks.runners import RUNNERS

        process, conn = in_worker(_worker, workload, runner, {**options, **RUNNERS[runner][1]})
        status, value, output = conn.recv()
        if status == "error":
            results[runner] = {"error": value}
            _finish(process)
            continue
        if reference is None:
            reference = output
        tolerance = INT8_TOLERANCE if "int8" in runner else FLOAT_TOLERANCE
        error = relative_error(reference, output)
        results[runner] = {"compile_s": value, "error": None, "rel_err": error, "mismatch": error > tolerance}
        workers[runner] = (process, conn)
        print(f"  {workload}: {runner} compiled in {value:.1f}s (rel. err {error:.1e})", flush=True)
    counts = {}
    for runner, (_, conn) in workers.items():
        time.sleep(SETTLE_SECONDS)
        conn.send(1)
        probe = conn.recv()[0]
        counts[runner] = int(min(200, max(1, ROUND_SECONDS / probe)))
    samples: dict[str, list[float]] = {r: [] for r in workers}
    for _ in range(rounds):
        for runner, (_, conn) in workers.items():
            time.sleep(SETTLE_SECONDS)
            conn.send(counts[runner])
            samples[runner].extend(conn.recv())
    for runner, (process, conn) in workers.items():
        conn.send(None)
        _finish(process)
        results[runner]["latency_ms"] = float(np.median(samples[runner])) * 1e3
        results[runner]["runs"] = len(samples[runner])
    return results


# A hypervisor may show only "AMD EPYC": the CPU family tells the generations apart (AMD's family 25
# is Zen 3/Zen 4, 26 is Zen 5), and schedules tuned on one can lose on another.
AMD_FAMILIES = {"25": "Zen 3/Zen 4", "26": "Zen 5"}


def cpu_model() -> str:
    """The CPU's model name, with its family where the name does not say the generation."""
    try:
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())
            if value
        )
    except OSError:
        return platform.processor() or "unknown"
    name = fields.get("model name", platform.processor() or "unknown")
    family = fields.get("cpu family")
    if fields.get("vendor_id") == "AuthenticAMD" and family in AMD_FAMILIES:
        return f"{name} ({AMD_FAMILIES[family]}, family {family})"
    return name


def main(argv: list[str] | None = None) -> int:
    from benchmarks.models import WORKLOADS
    from benchmarks.runners import RUNNERS
    from benchmarks.table import render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(WORKLOADS), help="comma-separated: " + ",".join(WORKLOADS))
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated: " + ",".join(RUNNERS))
    parser.add_argument("--tune-trials", type=int, default=16, help="trials for 'graphopt tuned' (0: skip it)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (git worktree add DIR COMMIT): each graphopt runner is timed "
        "again with its graphopt as '<runner> baseline', in the same run, for before/after figures",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here too")
    args = parser.parse_args(argv)

    os.environ["TVM_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    runners = [r for r in args.runners.split(",") if r and not (r == "graphopt tuned" and args.tune_trials <= 0)]
    if args.baseline:
        for runner in [r for r in runners if r.startswith("graphopt")]:
            RUNNERS[f"{runner} baseline"] = (
                RUNNERS[runner][0],
                {**RUNNERS[runner][1], "checkout": str(args.baseline.resolve()), "as_runner": runner},
            )
            runners.insert(runners.index(runner) + 1, f"{runner} baseline")
    tune_db = tempfile.mkdtemp(prefix="graphopt-bench-tuning-")  # fresh: tuning time is in compile time
    options = {"threads": args.threads, "tune_trials": args.tune_trials, "tune_db": tune_db}
    process, conn = in_worker(_peak_gflops, args.threads)
    peak = conn.recv()
    _finish(process)
    print(f"peak: {peak:.0f} GFLOP/s (2048x2048 torch matmul, {args.threads} threads)", flush=True)

    all_results = {}
    for workload in args.models.split(","):
        print(f"{workload}:", flush=True)
        results = bench_workload(workload, runners, options, args.rounds)
        all_results[workload] = (model_flops(workload), results)

    header = run_header("benchmarks/run_suite.py", argv, args.threads)
    publish(render({**header, "peak": peak}, runners, all_results, peak), args.out)
    return 0


def run_header(script: str, argv: list[str] | None, threads: int) -> dict[str, Any]:
    """What a results file records about its run: the command, date, CPU, threads, load at the end."""
    command = f"nice python {script} " + " ".join(argv if argv is not None else sys.argv[1:])
    return {
        "command": command.strip(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "threads": threads,
        "load": os.getloadavg()[0],
    }


def publish(markdown: str, out: Path | None) -> None:
    print(markdown)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown)


if __name__ == "__main__":
    raise SystemExit(main())
