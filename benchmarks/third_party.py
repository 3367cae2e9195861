"""Third-party architectures benchmark: graphopt against ONNX Runtime and torch on the models users bring.

    nice python benchmarks/third_party.py --quick                       # 5 CNNs, batch 1, eager/ORT/graphopt
    nice python benchmarks/third_party.py --models vit_b16,bert_base,gpt2_small --batch 1
    nice python benchmarks/third_party.py --batch 1,8 --runners "torch eager,ONNX Runtime,graphopt,graphopt int8"

The models are benchmarks/third_party_models.py (full-size, random weights). Compilation and timing
are run_suite.py's: each (model, runner) pair in its own worker process, compiled one at a time,
then all runners of a model timed interleaved, median latency; outputs compared with eager (float
1e-4, int8 5e-2 relative to the output's largest magnitude) and any mismatch marked in the table.
The table gives each latency as a ratio to ONNX Runtime's and to torch eager's, measured in the
same run. Not part of the test suite; a default run of every model at both batch sizes takes long
on 2 cores: use --quick or --models.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run_suite import bench_workload, model_flops, publish, run_header
from benchmarks.table import compile_time_table, geomean

ORT, EAGER = "ONNX Runtime", "torch eager"
DEFAULT_RUNNERS = "torch eager,torch.compile,ONNX Runtime,graphopt"
QUICK_RUNNERS = "torch eager,ONNX Runtime,graphopt"


def _cell(result: dict[str, Any], ort_ms: float | None, eager_ms: float | None) -> str:
    if result.get("error"):
        return f"failed: {result['error']}"
    ms = result["latency_ms"]
    ratios = [f"{ms / base:.2f}x {name}" for base, name in ((ort_ms, "ORT"), (eager_ms, "eager")) if base]
    mark = f" **MISMATCH** (rel. err {result['rel_err']:.1e})" if result["mismatch"] else ""
    return f"{ms:.2f} ms ({', '.join(ratios)}){mark}"


def render(header: dict[str, Any], runners: list[str], all_results: dict[str, tuple[int, dict]]) -> str:
    lines = [
        "# Third-party architectures: graphopt vs ONNX Runtime and torch (CPU)",
        "",
        f"- command: `{header['command']}`",
        f"- date: {header['date']}; CPU: {header['cpu']}; threads: {header['threads']} (torch, ONNX Runtime "
        f"intra-op, TVM_NUM_THREADS); 1-min load average at the end: {header['load']:.1f}",
        "- cell: median latency (ratio to ONNX Runtime's, ratio to torch eager's), all runners timed interleaved "
        "in one run, each in its own process; outputs compared with eager (float 1e-4, int8 5e-2 relative), "
        "a mismatch is marked",
        "",
        "| model | " + " | ".join(runners) + " |",
        "|---|" + "---|" * len(runners),
    ]
    for workload, (flops, results) in all_results.items():
        ort_ms = results.get(ORT, {}).get("latency_ms")
        eager_ms = results.get(EAGER, {}).get("latency_ms")
        cells = [_cell(results[r], ort_ms, eager_ms) if r in results else "-" for r in runners]
        lines.append(f"| {workload} ({flops / 1e9:.2f} GFLOP) | " + " | ".join(cells) + " |")
    lines += ["", "| geomean ratio | " + " | ".join(runners) + " |", "|---|" + "---|" * len(runners)]
    for base in (ORT, EAGER):
        cells = []
        for runner in runners:
            ratios = [
                res[runner]["latency_ms"] / res[base]["latency_ms"]
                for _, res in all_results.values()
                if "latency_ms" in res.get(runner, {}) and "latency_ms" in res.get(base, {})
            ]
            cells.append(f"{geomean(ratios):.2f}x over {len(ratios)}" if ratios else "-")
        lines.append(f"| to {base} | " + " | ".join(cells) + " |")
    lines += compile_time_table(runners, all_results)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.runners import RUNNERS
    from benchmarks.third_party_models import CNNS, MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ",".join(MODELS))
    parser.add_argument("--batch", default="1", help="comma-separated batch sizes: 1, 8 or 1,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--runners", default=None, help=f"comma-separated of: {','.join(RUNNERS)} (default: {DEFAULT_RUNNERS})"
    )
    parser.add_argument("--repeat", type=int, default=10, help="timing rounds (each runner gets one batch per round)")
    parser.add_argument("--tune-trials", type=int, default=16, help="trials for the 'graphopt tuned' runner")
    parser.add_argument("--quick", action="store_true", help=f"the CNNs at batch 1 with {QUICK_RUNNERS}")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (git worktree add DIR COMMIT): its graphopt build is timed as "
        "'graphopt baseline' in the same run, for before/after figures",
    )
    parser.add_argument(
        "--checkout", type=Path, help="time the graphopt of this checkout instead of this one's (a fixed commit)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here too")
    args = parser.parse_args(argv)

    models = CNNS if args.quick and args.models == ",".join(MODELS) else [m for m in args.models.split(",") if m]
    runners = [r for r in (args.runners or (QUICK_RUNNERS if args.quick else DEFAULT_RUNNERS)).split(",") if r]
    batches = [int(b) for b in args.batch.split(",") if b]
    unknown = [m for m in models if m not in MODELS] + [r for r in runners if r not in RUNNERS]
    if unknown or any(b < 1 for b in batches):
        parser.error(f"unknown model/runner or bad batch: {', '.join(unknown) or args.batch}")

    os.environ["TVM_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    options = {
        "threads": args.threads,
        "workloads": "benchmarks.third_party_models",
        "tune_trials": args.tune_trials,
        "tune_db": tempfile.mkdtemp(prefix="graphopt-bench-tuning-"),
    }
    if args.checkout:
        options["checkout"] = str(args.checkout.resolve())
    if args.baseline:
        RUNNERS["graphopt baseline"] = (
            RUNNERS["graphopt"][0],
            {"checkout": str(args.baseline.resolve()), "as_runner": "graphopt"},
        )
        runners.append("graphopt baseline")
    all_results = {}
    for batch in batches:
        for model in models:
            workload = f"{model}-b{batch}"
            print(f"{workload}:", flush=True)
            results = bench_workload(workload, runners, options, args.repeat)
            all_results[workload] = (model_flops(workload, options), results)

    publish(render(run_header("benchmarks/third_party.py", argv, args.threads), runners, all_results), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
