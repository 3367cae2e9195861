"""Coverage: compile every corpus model (samples/corpus) for cpu with O2, compare with eager, time both.

    python -m benchmarks.coverage [--only NAME ...] [--out benchmarks/results/coverage.md]

Per model: compile seconds (capture + O2 + TVM build), max relative error against PyTorch eager
(graphopt.numerics.relative_error, on a fresh input set drawn like the example inputs), and the
median latency of eager and of the compiled artifact. A model that fails is a row saying why. An
entry with compile options (the NMS detector's ``fallback="torch"``) is built with them; its row says
how many nodes ran in PyTorch.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import graphopt
from graphopt.errors import GraphoptError
from graphopt.numerics import relative_error
from samples.corpus import build, corpus, fresh_like

#: The float32 bound tests/targets/conftest.py justifies (TVM's summation order, tiny models).
TOLERANCE = 1e-5


def median_ms(run: Callable[[], Any], seconds: float = 0.3) -> float:
    run()
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(name: str) -> dict[str, Any]:
    model, inputs = build(name)
    started = time.perf_counter()
    try:
        compiled = graphopt.compile(model, inputs, target="cpu", **corpus()[name].options)
    except GraphoptError as error:
        return {"error": str(error).splitlines()[0][:160]}
    except Exception as error:  # a graphopt bug, not a refusal: say which exception
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:140]}"}
    compile_s = time.perf_counter() - started
    check = fresh_like(inputs, seed=1)
    with torch.no_grad():
        expected = model(*check)
    arrays = [t.numpy() for t in check]
    error = max(
        relative_error(expected, compiled(*arrays)),
        relative_error(model(*inputs), compiled(*[t.numpy() for t in inputs])),
    )

    def eager() -> Any:
        with torch.inference_mode():
            return model(*check)

    fallback = compiled.manifest.fallback
    return {
        "compile_s": compile_s,
        "error": None,
        "note": f"{len(fallback['nodes'])} node(s) in PyTorch (fallback torch)" if fallback else "",
        "max_error": error,
        "eager_ms": median_ms(eager),
        "graphopt_ms": median_ms(lambda: compiled(*arrays)),
    }


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def render(rows: list[tuple[str, str, dict[str, Any]]], command: str, load: str = "") -> str:
    matched = sum(1 for _, _, r in rows if not r["error"] and r["max_error"] <= TOLERANCE)
    lines = [
        "# graphopt coverage: corpus models compiled for cpu (O2) against PyTorch eager",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.date.today()}; CPU: {cpu_name()}; threads: {os.environ.get('TVM_NUM_THREADS', os.cpu_count())}; "
        f"torch {torch.__version__}" + (f"; load average {load}" if load else ""),
        f"- {matched} of {len(rows)} models compile and match eager within {TOLERANCE:g} relative error",
        "",
        "| model | family | compile s | max error | eager ms | graphopt ms | |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines.extend(row(name, family, r) for name, family, r in rows)
    return "\n".join(lines) + "\n"


def row(name: str, family: str, r: dict[str, Any]) -> str:
    """One model's table row (also printed as soon as it is measured: a cut-off run keeps its rows)."""
    if r["error"]:
        return f"| {name} | {family} | | | | | failed: {r['error']} |"
    verdict = ("ok" if r["max_error"] <= TOLERANCE else "**MISMATCH**") + (f"; {r['note']}" if r["note"] else "")
    return (
        f"| {name} | {family} | {r['compile_s']:.1f} | {r['max_error']:.1e} | {r['eager_ms']:.3f} "
        f"| {r['graphopt_ms']:.3f} | {verdict} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="corpus entries to run (default: all)")
    parser.add_argument("--out", default="benchmarks/results/coverage.md")
    args = parser.parse_args(argv)
    entries = corpus()
    names = args.only or list(entries)
    rows = []
    load_at_start = os.getloadavg()[0]
    for name in names:
        result = measure(name)
        rows.append((name, entries[name].family, result))
        print(row(name, entries[name].family, result), flush=True)
    command = "python -m benchmarks.coverage" + (" --only " + " ".join(args.only) if args.only else "")
    load = f"{load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1 min)"
    text = render(rows, command, load)
    print(text)
    if not args.only:
        Path(args.out).write_text(text)
    return 0 if all(not r["error"] and r["max_error"] <= TOLERANCE for _, _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
