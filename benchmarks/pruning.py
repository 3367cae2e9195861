"""Structured pruning, measured: size, FLOPs, compiled CPU latency and accuracy before and after.

    python -m benchmarks.pruning                 # both parts (a few minutes on 2 cores)
    python -m benchmarks.pruning --only resnet18 # or --only digits

``resnet18``: samples ResNet-18 (seeded weights) on 1x3x224x224, every group at channel ratio 0.5
(l1, round_to 8); GMACs (FLOPs / 2), parameters, and the latency of both models compiled for the
CPU (O2) timed in this same run.

``digits``: the three trained digits models at 50% FLOPs, one uniform ratio against per-group
ratios allocated from a sensitivity analysis (top-1 on the training split as the metric, so the
359 held-out digits stay unseen), top-1 on the held-out digits before fine-tuning and after 1 and
3 epochs of it (``samples.train.train``: Adam 1e-3, batch 64, seeded), and compiled latency.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch

import graphopt
from samples.cnn import digits_cnn
from samples.digits import load_digits_28
from samples.mobilenet import mobilenet_small_digits
from samples.resnet import resnet18, resnet_small_digits
from samples.train import accuracy, train

DIGITS_MODELS = {
    "digits_cnn": digits_cnn,
    "resnet_small_digits": resnet_small_digits,
    "mobilenet_small_digits": mobilenet_small_digits,
}


def compiled_ms(graph: graphopt.Graph, *, number: int, repeat: int) -> float:
    compiled = graphopt.compile(graph, graph.example_inputs, target="cpu")
    inputs = [t.numpy() for t in graph.example_inputs]
    compiled.time(*inputs, number=2, repeat=1)  # warm-up
    times = sorted(compiled.time(*inputs, number=number, repeat=repeat))
    return 1000 * times[len(times) // 2]


def bench_resnet18() -> list[str]:
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    graph = graphopt.capture(resnet18(), x)
    start = time.perf_counter()
    pruned, report = graphopt.prune(graph, ratio=0.5, round_to=8)
    seconds = time.perf_counter() - start
    before_ms = compiled_ms(graph, number=10, repeat=5)
    after_ms = compiled_ms(pruned, number=10, repeat=5)
    b, a = report.before, report.after
    return [
        "| ResNet-18 1x3x224x224, ratio 0.5 | before | after | after / before |",
        "| --- | ---: | ---: | ---: |",
        f"| GMACs | {b.flops / 2e9:.3f} | {a.flops / 2e9:.3f} | {a.flops / b.flops:.3f} |",
        f"| params (M, incl. BN buffers) | {b.params / 1e6:.2f} | {a.params / 1e6:.2f} | {a.params / b.params:.3f} |",
        f"| compiled CPU latency (ms, median) | {before_ms:.2f} | {after_ms:.2f} | {after_ms / before_ms:.3f} "
        f"({before_ms / after_ms:.2f}x faster) |",
        "",
        f"pruning took {seconds:.1f} s",
    ]


def finetuned_accuracies(
    graph: graphopt.Graph, data: dict[str, torch.Tensor], epochs: tuple[int, ...]
) -> dict[int, float]:
    """Held-out top-1 of ``graph`` after each number of fine-tuning epochs (0: as pruned)."""
    module = copy.deepcopy(graph.module)
    results = {0: accuracy(module, data["x_test"], data["y_test"])}
    done = 0
    for total in epochs:
        train(module, data["x_train"], data["y_train"], total - done)
        done = total
        results[total] = accuracy(module, data["x_test"], data["y_test"])
    return results


def bench_digits(epochs: tuple[int, ...] = (1, 3)) -> list[str]:
    x_train, y_train = load_digits_28("train")
    x_test, y_test = load_digits_28("test")
    data = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    def train_top1(module: Any) -> float:
        return accuracy(module, x_train, y_train)

    lines = [
        "| model | allocation | FLOPs | params | top-1 pruned | "
        + " | ".join(f"top-1 +{e} ep" for e in epochs)
        + " | compiled ms |",
        "| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in epochs) + " | ---: |",
    ]
    for name, factory in DIGITS_MODELS.items():
        graph = graphopt.capture(factory(), x_test[:1])
        unpruned = accuracy(graph.module, x_test, y_test)
        lines.append(
            f"| {name} | unpruned | 1.000 | 1.000 | {unpruned:.3f} | "
            + " | ".join("-" for _ in epochs)
            + f" | {compiled_ms(graph, number=50, repeat=5):.3f} |"
        )
        curves = graphopt.sensitivity(
            graph, levels=(0.125, 0.25, 0.375, 0.5, 0.625, 0.75), evaluate=train_top1, metric_name="train top-1"
        )
        for allocation, extra in (("uniform", {}), ("sensitivity", {"sensitivity": curves})):
            pruned, report = graphopt.prune(graph, flops=0.5, round_to=1, **extra)  # type: ignore[arg-type]
            results = finetuned_accuracies(pruned, data, epochs)
            lines.append(
                f"| {name} | {allocation} | {report.after.flops / report.before.flops:.3f} | "
                f"{report.after.params / report.before.params:.3f} | {results[0]:.3f} | "
                + " | ".join(f"{results[e]:.3f}" for e in epochs)
                + f" | {compiled_ms(pruned, number=50, repeat=5):.3f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["resnet18", "digits"])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.only in (None, "resnet18"):
        print("\n".join(bench_resnet18()), flush=True)
        print()
    if args.only in (None, "digits"):
        print("\n".join(bench_digits()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
