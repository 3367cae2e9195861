"""int8 artifact vs float32 artifact on the CPU target, batch 64: the MLP and the digits CNN.

Both artifacts of a model come from the same O2-optimized graph, built with the same target and
schedules; the int8 one is ``graphopt.quantize`` (static, min-max, calibrated on 256 training
digits) of it. Timings interleave the two artifacts (TVM's time_evaluator, median of repeats) so
machine noise hits both alike; the ratio is what to compare across machines.

    python benchmarks/int8_vs_fp32.py [--repeat 7] [--number 50] [--markdown]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphopt  # noqa: E402
from graphopt.targets import build  # noqa: E402
from samples.cnn import digits_cnn  # noqa: E402
from samples.digits import load_digits_28, load_digits_flat  # noqa: E402
from samples.mnist_mlp import mnist_mlp  # noqa: E402

BATCH = 64
MODELS = {"mlp (784-256-128-10)": (mnist_mlp, load_digits_flat), "digits cnn": (digits_cnn, load_digits_28)}


def _accuracy(outputs, labels) -> float:
    return float((torch.as_tensor(outputs).argmax(1) == labels).float().mean()) * 100


def measure(name: str, factory, loader, number: int, repeat: int) -> dict[str, object]:
    x_train, _ = loader("train")
    x_test, y_test = loader("test")
    graph = graphopt.capture(factory(), x_test[:BATCH])
    optimized, report = graphopt.optimize(graph, "O2")
    quantized, summary = graphopt.quantize(optimized, x_train[:256])
    fp32 = build(optimized, report, target="cpu")
    int8 = build(quantized, report, target="cpu")
    batch = x_test[:BATCH].numpy()
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(repeat):  # interleaved, so drift in machine load affects both
        times["fp32"] += fp32.time(batch, number=number, repeat=1)
        times["int8"] += int8.time(batch, number=number, repeat=1)
    fp32_ms, int8_ms = (statistics.median(times[k]) * 1e3 for k in ("fp32", "int8"))
    full = x_test[: (len(x_test) // BATCH) * BATCH]
    chunks = [full[i : i + BATCH].numpy() for i in range(0, len(full), BATCH)]
    labels = y_test[: len(full)]
    return {
        "model": name,
        "fp32_ms": fp32_ms,
        "int8_ms": int8_ms,
        "speedup": fp32_ms / int8_ms,
        "fp32_bytes": summary.float_bytes,
        "int8_bytes": summary.quantized_bytes,
        "fp32_acc": _accuracy(torch.cat([torch.as_tensor(fp32(c)) for c in chunks]), labels),
        "int8_acc": _accuracy(torch.cat([torch.as_tensor(int8(c)) for c in chunks]), labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=50, help="runs averaged per measurement")
    parser.add_argument("--repeat", type=int, default=7, help="measurements per artifact (median reported)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    rows = [measure(name, *spec, args.number, args.repeat) for name, spec in MODELS.items()]
    header = "| model | fp32 ms | int8 ms | fp32/int8 | weights fp32 -> int8 | top-1 fp32 / int8 (digits test) |"
    print(f"CPU: {platform.processor() or platform.machine()}, batch {BATCH}, torch {torch.__version__}")
    print(header)
    print("|" + "---|" * 6)
    for row in rows:
        print(
            f"| {row['model']} | {row['fp32_ms']:.3f} | {row['int8_ms']:.3f} | {row['speedup']:.2f}x "
            f"| {row['fp32_bytes'] / 1024:.0f} KiB -> {row['int8_bytes'] / 1024:.0f} KiB "
            f"| {row['fp32_acc']:.2f}% / {row['int8_acc']:.2f}% |"
        )


if __name__ == "__main__":
    main()
