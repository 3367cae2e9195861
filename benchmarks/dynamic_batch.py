"""A ``dynamic_batch=True`` artifact against artifacts built for one batch size (CPU target, untuned).

    nice python benchmarks/dynamic_batch.py --models mlp,cnn,resnet50,bert_base --batches 1,8 \
        --out benchmarks/results/dynamic_batch.md
    nice python benchmarks/dynamic_batch.py --checkout /tmp/base ...   # git worktree add /tmp/base COMMIT

Per model: one artifact with a symbolic batch (traced at batch 2) and one static artifact per batch.
At each batch both are timed interleaved in one process (TVM's time_evaluator: the VM and its kernels,
no Python call overhead; median of ``--repeat`` rounds), and their outputs compared. Models: the
samples' MNIST MLP and digits CNN (``mlp``, ``cnn``, random weights) and any of
benchmarks/third_party_models.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.models import WORKLOADS as SAMPLES
from benchmarks.run_suite import publish, run_header, use_checkout
from benchmarks.third_party_models import MODELS, workload


def build(name: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    if name in ("mlp", "cnn"):
        sample = SAMPLES[f"{name}-b1"]
        model, x = sample.build()
        return model, torch.randn(batch, *x.shape[1:], generator=torch.Generator().manual_seed(batch))
    return workload(name, batch).build()


def median_ms(model: Any, array: np.ndarray, number: int) -> float:
    return statistics.median(model.time(array, number=number, repeat=1)) * 1e3


def measure(name: str, batches: list[int], repeat: int) -> list[dict[str, Any]]:
    import graphopt

    model, example = build(name, 2)
    dynamic = graphopt.compile(model, example, dynamic_batch=True)
    rows = []
    for batch in batches:
        _, x = build(name, batch)
        static = graphopt.compile(model, x)
        array = x.numpy()
        error = float(np.abs(dynamic(array) - static(array)).max())
        number = max(1, int(0.2 / max(median_ms(static, array, 3) / 1e3, 1e-6)))  # ~0.2 s per measurement
        times: dict[str, list[float]] = {"static": [], "dynamic": []}
        for _ in range(repeat):
            times["static"].append(median_ms(static, array, number))
            times["dynamic"].append(median_ms(dynamic, array, number))
        s, d = statistics.median(times["static"]), statistics.median(times["dynamic"])
        rows.append({"model": name, "batch": batch, "static": s, "dynamic": d, "error": error})
        print(f"{name} batch {batch}: static {s:.4f} ms, dynamic {d:.4f} ms ({d / s:.2f}x)", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = [
        "# A dynamic-batch artifact against static ones (CPU, untuned)",
        "",
        f"Command: `{header['command']}`",
        "",
        f"{header['date']}; CPU: {header['cpu']}; {header['threads']} threads; load {header['load']:.1f} at the end.",
        "Times are TVM's time_evaluator (the VM and its kernels), static and dynamic interleaved, median.",
        "",
        "| model | batch | static ms | dynamic ms | dynamic / static | max abs difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['static']:.4f} | {r['dynamic']:.4f} | "
            f"{r['dynamic'] / r['static']:.2f}x | {r['error']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,cnn,resnet50,mobilenet_v3_large,bert_base")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--checkout", type=Path, help="build with the graphopt of this checkout (an older commit)")
    args = parser.parse_args(argv)
    if args.checkout:
        use_checkout(str(args.checkout.resolve()))
    names = args.models.split(",")
    unknown = [n for n in names if n not in ("mlp", "cnn") and n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from mlp, cnn, {', '.join(MODELS)}")
    batches = [int(b) for b in args.batches.split(",")]
    rows = [row for name in names for row in measure(name, batches, args.repeat)]
    from graphopt.targets.threads import runtime_threads

    publish(markdown(rows, run_header("benchmarks/dynamic_batch.py", argv, runtime_threads())), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
