"""Compile time of ``graphopt.compile`` (untuned) per model, by stage, optionally beside another checkout.

    nice python benchmarks/compile_time.py --models regnety_400mf,efficientnet_b0
    nice python benchmarks/compile_time.py --baseline /tmp/base      # git worktree add /tmp/base COMMIT

Each (model, checkout) compile runs in its own fresh process, the checkouts alternating model by model
(back to back, the same load). Wall time is what a user waits; CPU time (``time.process_time``, every
thread of the process) is what the build costs, and moves less with the machine's load. Stages are
those the build announces (``graphopt.progress``): capture and the graph passes, lowering to Relax, the
TVM build, the check against eager. Models: benchmarks/third_party_models.py at batch 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run_suite import publish, run_header

STAGES = ("capture + graph passes", "lowering", "TVM build", "eager check")


def measure(model: str, threads: int) -> dict[str, Any]:
    """Compile ``model`` once in this process; wall and CPU seconds in total and by stage."""
    import time

    import graphopt
    from benchmarks.third_party_models import WORKLOADS
    from graphopt import progress

    module, x = WORKLOADS[f"{model}-b1"].build()
    marks: list[tuple[str, float, float]] = []

    def listen(message: str) -> None:
        marks.append((message, time.perf_counter(), time.process_time()))

    wall, cpu = time.perf_counter(), time.process_time()
    marks.append(("capture", wall, cpu))
    with progress.listening(listen):
        graphopt.compile(module, (x,), target="cpu", num_cores=threads)
    marks.append(("end", time.perf_counter(), time.process_time()))
    stages: dict[str, list[float]] = {}
    for (message, w0, c0), (_, w1, c1) in itertools.pairwise(marks):
        name = _stage(message)
        if name:
            total = stages.setdefault(name, [0.0, 0.0])
            total[0] += w1 - w0
            total[1] += c1 - c0
    return {"wall": marks[-1][1] - wall, "cpu": marks[-1][2] - cpu, "stages": stages}


def _stage(message: str) -> str | None:
    for prefix, name in (
        ("capture", STAGES[0]),
        ("lowering", STAGES[1]),
        ("building with TVM", STAGES[2]),
        ("checking", STAGES[3]),
    ):
        if message.startswith(prefix):
            return name
    return None  # a pass the pass manager names inside the first stage is timed with it


def run_child(model: str, threads: int, checkout: str | None) -> dict[str, Any]:
    """``measure`` in a fresh interpreter (imports and caches as a user's first compile finds them)."""
    env = {**os.environ, "TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--child", model, "--threads", str(threads)]
    if checkout:
        command += ["--checkout", checkout]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def render(header: dict[str, Any], columns: list[str], results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "# Compile time without tuning (graphopt.compile, CPU target)",
        "",
        f"- command: `{header['command']}`",
        f"- date: {header['date']}; CPU: {header['cpu']}; threads: {header['threads']}; "
        f"1-min load average at the end: {header['load']:.1f}",
        "- each compile in its own fresh process, the checkouts alternating model by model; "
        "cell: wall s (CPU s); model at batch 1, 3x224x224",
        "",
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for model, by_column in results.items():
        cells = [_cell(by_column.get(c, {})) for c in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for column in columns:
        lines += ["", f"Stages, {column}: wall s (CPU s)", "", "| model | " + " | ".join(STAGES) + " |"]
        lines.append("|---|" + "---|" * len(STAGES))
        for model, by_column in results.items():
            stages = by_column.get(column, {}).get("stages", {})
            cells = [f"{stages[s][0]:.1f} ({stages[s][1]:.1f})" if s in stages else "-" for s in STAGES]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    return f"{result['wall']:.1f} ({result['cpu']:.1f})" if result else "-"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.third_party_models import CNNS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CNNS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit, compiled beside this one")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here too")
    parser.add_argument(
        "--checkout",
        type=Path,
        help="compile with the graphopt of this checkout instead of this one's (a fixed commit)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.checkout:
            from benchmarks.run_suite import use_checkout

            use_checkout(str(args.checkout))
        print(json.dumps(measure(args.child, args.threads)))
        return 0
    columns = (["baseline"] if args.baseline else []) + ["this checkout"]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for model in [m for m in args.models.split(",") if m]:
        for column in columns:
            chosen = args.baseline if column == "baseline" else args.checkout
            checkout = str(chosen.resolve()) if chosen else None
            results.setdefault(model, {})[column] = result = run_child(model, args.threads, checkout)
            print(f"{model} [{column}]: {_cell(result)}", flush=True)
    publish(render(run_header("benchmarks/compile_time.py", argv, args.threads), columns, results), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
