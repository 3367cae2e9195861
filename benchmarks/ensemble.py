"""One fused ensemble artifact vs its members' separate artifacts run one after another (CPU target).

Four digits CNNs (samples/cnn.py) trained with seeds 0..3 as samples/train.py trains (Adam, a few
epochs on the 1438 training digits) are fused by ``graphopt.fuse_models(..., combine="mean")``
into one artifact, with and without horizontal fusion, and compared with the four separate
graphopt artifacts (same O2 pipeline, same default CPU schedules) called one after another. Two
timings per configuration, interleaved so machine drift hits all alike (median of repeats):

- ``call``: wall-clock of what a user runs, ``fused(x)`` vs ``[m(x) for m in members]`` and the
  mean in numpy; includes each artifact's per-call overhead (inputs in, outputs out);
- ``kernel``: TVM's time_evaluator (the artifacts' VM only), summed over the members.

Also: the fused artifact's output against the mean of the members' eager outputs (max abs error)
and top-1 of the ensemble vs each member on the 359 held-out digits. Then three architectures
(MLP, CNN, resnet_small, the samples' trained weights) fused into one artifact on the same input,
and two heads on one shared backbone (what is computed once).

    python benchmarks/ensemble.py [--epochs 4] [--repeat 7] [--markdown]
    python benchmarks/ensemble.py --grouped-conv     # only: one grouped conv vs the four it replaces
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphopt  # noqa: E402
from benchmarks.run_suite import cpu_model  # noqa: E402
from samples.cnn import DigitsCNN, digits_cnn  # noqa: E402
from samples.digits import load_digits_28  # noqa: E402
from samples.mnist_mlp import mnist_mlp  # noqa: E402
from samples.resnet import resnet_small_digits  # noqa: E402
from samples.train import accuracy, train  # noqa: E402

SEEDS = (0, 1, 2, 3)


def _compile(model_or_graph: Any, x: torch.Tensor) -> Any:
    if isinstance(model_or_graph, graphopt.Graph):
        return graphopt.compile(model_or_graph, model_or_graph.example_inputs, target="cpu")
    return graphopt.compile(model_or_graph, x, target="cpu")


def _call_seconds(run: Any, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        run()
    return (time.perf_counter() - start) / number


def time_batch(members: list[nn.Module], batch: int, x_test: torch.Tensor, number: int, repeat: int) -> dict[str, Any]:
    x = x_test[:batch]
    array = x.numpy()
    separate = [_compile(m, x) for m in members]
    fused_graph, report = graphopt.fuse_models(members, x, combine="mean", horizontal=True)
    plain_graph, _ = graphopt.fuse_models(members, x, combine="mean", horizontal=False)
    _, auto = graphopt.fuse_models(members, x, combine="mean")  # the default, horizontal="auto"
    fused, plain = _compile(fused_graph, x), _compile(plain_graph, x)
    runs = {
        "separate": lambda: np.mean([m(array) for m in separate], axis=0),
        "fused (one graph, no horizontal)": lambda: plain(array),
        "fused + horizontal": lambda: fused(array),
    }
    kernels = {
        "separate": lambda: sum(statistics.median(m.time(array, number=number, repeat=1)) for m in separate),
        "fused (one graph, no horizontal)": lambda: statistics.median(plain.time(array, number=number, repeat=1)),
        "fused + horizontal": lambda: statistics.median(fused.time(array, number=number, repeat=1)),
    }
    call: dict[str, list[float]] = {k: [] for k in runs}
    kernel: dict[str, list[float]] = {k: [] for k in runs}
    for run in runs.values():
        run()  # warm up
    for _ in range(repeat):
        for name in runs:
            call[name].append(_call_seconds(runs[name], number))
            kernel[name].append(kernels[name]())
    with torch.no_grad():
        want = torch.stack([m(x) for m in members]).mean(0).numpy()
    return {
        "batch": batch,
        "call_ms": {k: statistics.median(v) * 1e3 for k, v in call.items()},
        "kernel_ms": {k: statistics.median(v) * 1e3 for k, v in kernel.items()},
        "error": {
            "fused + horizontal": float(np.abs(fused(array) - want).max()),
            "fused (one graph, no horizontal)": float(np.abs(plain(array) - want).max()),
        },
        "horizontal": report.horizontal,
        "auto": "fused + horizontal" if auto.horizontal else "fused (one graph, no horizontal)",
        "fused_artifact": fused,
    }


def top1(outputs: np.ndarray, labels: torch.Tensor) -> float:
    return float((torch.as_tensor(outputs).argmax(1) == labels).float().mean()) * 100


def grouped_conv(repeat: int) -> None:
    """The horizontally fused CNN's second convolution at batch 64: one grouped conv vs four plain ones."""
    torch.manual_seed(0)
    x = torch.randn(64, 64, 14, 14)
    grouped = _compile(nn.Sequential(nn.Conv2d(64, 128, 3, padding=1, groups=4, bias=False)).eval(), x)
    single = _compile(nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False)).eval(), x[:, :16].contiguous())
    a, b = x.numpy(), x[:, :16].contiguous().numpy()
    for _ in range(repeat):
        one = statistics.median(grouped.time(a, number=20, repeat=3)) * 1e3
        four = 4 * statistics.median(single.time(b, number=20, repeat=3)) * 1e3
        print(f"grouped conv 64->128 groups=4: {one:.2f} ms; four conv 16->32: {four:.2f} ms")


def shared_backbone(trained: DigitsCNN, x_test: torch.Tensor) -> None:
    """Two heads (digit class, even/odd) on one frozen backbone, captured as two whole models."""
    backbone = nn.Sequential(*list(trained.children())[:-1]).eval()  # everything up to the classifier
    torch.manual_seed(0)
    heads = [nn.Sequential(backbone, trained.fc).eval(), nn.Sequential(backbone, nn.Linear(1568, 2)).eval()]
    x = x_test[:1]
    graph, report = graphopt.fuse_models(heads, x, combine="none")
    convs = sum(
        1
        for n in graph.module.graph.nodes
        if (n.op == "call_module" and isinstance(graph.module.get_submodule(str(n.target)), nn.Conv2d))
        or (n.op == "call_function" and "conv" in str(n.target))
    )
    member_convs = sum(1 for m in heads for layer in m.modules() if isinstance(layer, nn.Conv2d))
    artifact = graphopt.compile(graph, graph.example_inputs, target="cpu")
    with torch.no_grad():
        want = [h(x_test[:64]).numpy() for h in heads]
    got = [artifact(x_test[i : i + 1].numpy()) for i in range(64)]
    error = max(float(np.abs(np.concatenate([g[k] for g in got]) - want[k]).max()) for k in range(2))
    print(
        f"\ntwo heads on one shared backbone (combine='none'): members {report.unfused.nodes} nodes and "
        f"{report.unfused.param_bytes} weight bytes together; fused {report.fused.nodes} nodes and "
        f"{report.fused.param_bytes} bytes; {len(report.merged)} nodes merged ({report.merged_bytes} bytes); "
        f"convolutions in the fused graph: {convs} (the members hold {member_convs}); "
        f"artifact vs eager heads over 64 digits: max abs error {error:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per member")
    parser.add_argument("--number", type=int, default=50, help="runs averaged per measurement")
    parser.add_argument("--repeat", type=int, default=7, help="measurements per configuration (median reported)")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--threads", type=int, default=2, help="torch and TVM threads")
    parser.add_argument("--grouped-conv", action="store_true", help="only time one grouped conv vs four plain ones")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts (first run)
    if args.grouped_conv:
        grouped_conv(3)
        return
    x_train, y_train = load_digits_28("train")
    x_test, y_test = load_digits_28("test")
    members = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = DigitsCNN()
        torch.manual_seed(seed)
        train(model, x_train, y_train, args.epochs)
        members.append(model.eval())
    member_acc = [accuracy(m, x_test, y_test) * 100 for m in members]
    results = [time_batch(members, batch, x_test, args.number, args.repeat) for batch in (1, 8, 64)]
    fused_1 = results[0]["fused_artifact"]
    ensemble_out = np.concatenate([fused_1(x_test[i : i + 1].numpy()) for i in range(len(x_test))])
    ensemble_acc = top1(ensemble_out, y_test)
    with torch.no_grad():
        want = torch.stack([m(x_test) for m in members]).mean(0).numpy()
    full_error = float(np.abs(ensemble_out - want).max())

    print(f"CPU: {cpu_model()}, torch {torch.__version__}, {args.threads} threads, load {os.getloadavg()[0]:.1f}")
    print(f"four digits CNNs, seeds {SEEDS}, {args.epochs} epochs each; combine=mean")
    print("horizontal fusion: " + "; ".join(results[0]["horizontal"]))
    print()
    print(
        "| batch | configuration | call ms | speedup (call) | kernel ms | speedup (kernel) | max abs error vs eager mean |"
    )
    print("|" + "---|" * 7)
    for result in results:
        base_call, base_kernel = result["call_ms"]["separate"], result["kernel_ms"]["separate"]
        for name in result["call_ms"]:
            error = result["error"].get(name)
            print(
                f"| {result['batch']} | {name} | {result['call_ms'][name]:.3f} | {base_call / result['call_ms'][name]:.2f}x "
                f"| {result['kernel_ms'][name]:.3f} | {base_kernel / result['kernel_ms'][name]:.2f}x "
                f"| {'-' if error is None else f'{error:.1e}'} |"
            )
    print()
    print("| top-1 on the 359 held-out digits | % |")
    print("|---|---|")
    for seed, acc in zip(SEEDS, member_acc, strict=True):
        print(f"| member seed {seed} (eager) | {acc:.2f} |")
    print(f"| ensemble (fused artifact, batch 1, all 359) | {ensemble_acc:.2f} |")
    print(f"\nfused artifact vs eager mean over all 359 digits: max abs error {full_error:.1e}")
    print("\nthe default, horizontal='auto', picks: " + "; ".join(f"batch {r['batch']}: {r['auto']}" for r in results))
    shared_backbone(members[0], x_test)

    # three architectures on the same input, the samples' trained weights
    mlp = nn.Sequential(nn.Flatten(), mnist_mlp()).eval()
    trio = [mlp, digits_cnn(), resnet_small_digits()]
    x = x_test[:64]
    graph, report = graphopt.fuse_models(trio, x, combine="mean")
    artifact = graphopt.compile(graph, graph.example_inputs, target="cpu")
    chunks = [x_test[i : i + 64] for i in range(0, len(x_test) - 63, 64)]
    with torch.no_grad():
        eager = [torch.stack([m(c) for m in trio]).mean(0).numpy() for c in chunks]
    compiled = [artifact(c.numpy()) for c in chunks]
    error = max(float(np.abs(a - b).max()) for a, b in zip(compiled, eager, strict=True))
    labels = y_test[: len(chunks) * 64]
    print(
        f"\nthree architectures (MLP, digits CNN, resnet_small) in one artifact: {report.fused.nodes} nodes, "
        f"max abs error vs eager mean {error:.1e} over {len(labels)} digits; top-1 ensemble "
        f"{top1(np.concatenate(compiled), labels):.2f}%, members "
        + ", ".join(f"{accuracy(m, x_test[: len(labels)], labels) * 100:.2f}%" for m in trio)
    )


if __name__ == "__main__":
    main()
