"""Structured pruning, measured: size, FLOPs, compiled CPU latency and accuracy before and after.

    python -m benchmarks.pruning                 # both parts (a few minutes on 2 cores)
    python -m benchmarks.pruning --only resnet18 # or --only digits, --only latency

``resnet18``: samples ResNet-18 (seeded weights) on 1x3x224x224, every group at channel ratio 0.5
(l1, round_to 8); GMACs (FLOPs / 2), parameters, and the latency of both models compiled for the
CPU (O2) timed in this same run.

``digits``: the three trained digits models at 50% FLOPs, one uniform ratio against per-group
ratios allocated from a sensitivity analysis (the fidelity error to the unpruned logits on 256
training images as the metric, each candidate's BatchNorm statistics re-measured on them, so the
359 held-out digits stay unseen); held-out top-1 as pruned, with the BatchNorm statistics re-measured, and after 3
epochs of ``graphopt.pruning.recover`` (distillation from the unpruned model, one-cycle lr); the
unpruned and both pruned models compiled for the CPU and timed round-robin in one process.

``latency``: per digits model, the sensitivity allocation at flops <= 0.5 and uniform ratios at
several FLOPs budgets (round_to 4), all compiled for the CPU and timed round-robin in one process;
the sensitivity one is compared with the fastest uniform candidate that is not faster than it.

``equal-latency``: per digits model, ``graphopt.prune(speedup=1.25, sensitivity=curves)`` with the
curves' latency measured on the CPU (round_to 8), against the uniform ratio whose measured latency
is closest to it (of the distinct uniform widths at ratios 0.05..0.9, the 4 nearest in FLOPs,
compiled and timed round-robin with it and the unpruned model); both BN re-measured and recovered
with the same 3 epochs.
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
from samples.train import accuracy

#: ``graphopt.pruning.recover``'s settings for every digits row: distillation from the unpruned model
#: (T=4, alpha=0.9), Adam under a one-cycle schedule peaking at 1e-2, batch 32.
RECOVER: dict[str, Any] = {"lr": 1e-2, "batch_size": 32, "temperature": 4.0, "alpha": 0.9}
#: Training images that re-measure the BatchNorm statistics of a pruned candidate (no labels used).
RECALIBRATION = 256
LEVELS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
UNIFORM_BUDGETS = (0.4, 0.5, 0.6, 0.7)
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


def recovered(graph: graphopt.Graph, teacher: Any, data: dict[str, torch.Tensor], epochs: int) -> float:
    """Held-out top-1 of ``graph`` after ``epochs`` of ``graphopt.pruning.recover`` (distillation, one-cycle)."""
    module = copy.deepcopy(graph.module)
    graphopt.pruning.recover(module, teacher, (data["x_train"], data["y_train"]), epochs=epochs, **RECOVER)
    return accuracy(module, data["x_test"], data["y_test"])


def digits_data() -> dict[str, torch.Tensor]:
    x_train, y_train = load_digits_28("train")
    x_test, y_test = load_digits_28("test")
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def digits_curves(graph: graphopt.Graph, data: dict[str, torch.Tensor]) -> Any:
    """Sensitivity curves on training images (the 359 held-out digits stay unseen), BN re-measured.

    The metric is the fidelity error to the unpruned logits (graphopt.sensitivity's default), not
    top-1 on the training split: the models are at 100% there, so with their BatchNorms re-measured
    most groups read as free down to 75% removed, and the allocation took all of those at once.
    """
    images = data["x_train"][:RECALIBRATION]
    return graphopt.sensitivity(graph, levels=LEVELS, calibration_inputs=images, recalibrate=images)


def bench_digits() -> list[str]:
    """Per model: uniform and sensitivity allocations at flops <= 0.5; then every model compiled and
    timed, each model's three graphs round-robin (after all the training, so it does not load the timing)."""
    data = digits_data()
    lines = [
        "| model | allocation | FLOPs | params | compiled ms (median) | top-1 pruned | pruned, BN re-measured | "
        "recover 3 ep | 3 ep - unpruned |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    results = {}
    for name, factory in DIGITS_MODELS.items():
        graph = graphopt.capture(factory(), data["x_test"][:1])
        unpruned = accuracy(graph.module, data["x_test"], data["y_test"])
        curves = digits_curves(graph, data)
        graphs, rows = {"unpruned": graph}, {}
        for allocation, extra in (("uniform", {}), ("sensitivity", {"sensitivity": curves})):
            pruned, _ = graphopt.prune(graph, flops=0.5, round_to=1, **extra)  # type: ignore[arg-type]
            as_pruned = accuracy(pruned.module, data["x_test"], data["y_test"])
            graphopt.pruning.recalibrate(pruned.module, data["x_train"][:RECALIBRATION])
            recalibrated = accuracy(pruned.module, data["x_test"], data["y_test"])
            three = recovered(pruned, graph.module, data, 3)
            graphs[allocation], rows[allocation] = pruned, (as_pruned, recalibrated, three)
            print(name, allocation, rows[allocation], flush=True)
        results[name] = (graphs, rows, unpruned)
    verdicts = []
    for name, (graphs, rows, unpruned) in results.items():
        ms = interleaved_ms(graphs)
        before = graphs["unpruned"].stats()
        for key, g in graphs.items():
            after = g.stats()
            sizes = f"{after.flops / before.flops:.3f} | {after.params / before.params:.3f} | {ms[key]:.4f}"
            if key == "unpruned":
                lines.append(f"| {name} | unpruned | {sizes} | {unpruned:.3f} | - | - | - |")
                continue
            as_pruned, recalibrated, three = rows[key]
            lines.append(
                f"| {name} | {key} | {sizes} | {as_pruned:.3f} | {recalibrated:.3f} | {three:.3f} | "
                f"{100 * (three - unpruned):+.1f} |"
            )
        print("\n".join(lines[-3:]), flush=True)
        (_, s_bn, s_three), (_, u_bn, u_three) = rows["sensitivity"], rows["uniform"]
        verdicts.append(
            f"{name}: sensitivity / uniform latency {ms['sensitivity'] / ms['uniform']:.2f}; top-1 with BN "
            f"re-measured {s_bn:.3f} vs {u_bn:.3f}, after 3 epochs {s_three:.3f} vs {u_three:.3f}"
        )
    return [*lines, "", *verdicts]


def interleaved_ms(graphs: dict[str, graphopt.Graph], rounds: int = 9, number: int = 100) -> dict[str, float]:
    """Median ms per run of each graph compiled for the CPU, timed round-robin in this one process."""
    compiled = {key: graphopt.compile(g, g.example_inputs, target="cpu") for key, g in graphs.items()}
    inputs = {key: [t.numpy() for t in g.example_inputs] for key, g in graphs.items()}
    samples: dict[str, list[float]] = {key: [] for key in graphs}
    for key, c in compiled.items():
        c.time(*inputs[key], number=10, repeat=1)  # warm-up
    for _ in range(rounds):
        for key, c in compiled.items():
            samples[key].extend(c.time(*inputs[key], number=number, repeat=1))
    return {key: 1000 * sorted(v)[len(v) // 2] for key, v in samples.items()}


def bench_latency(round_to: int = 4) -> list[str]:
    """Sensitivity allocation (flops <= 0.5) against uniform ratios around it, at measured latency."""
    data = digits_data()
    lines = [
        "| model | candidate | FLOPs | compiled ms (median) | top-1 pruned | recover 3 ep |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for name, factory in DIGITS_MODELS.items():
        graph = graphopt.capture(factory(), data["x_test"][:1])
        curves = digits_curves(graph, data)
        graphs = {"unpruned": graph}
        try:
            graphs["sensitivity flops<=0.5"], _ = graphopt.prune(
                graph, flops=0.5, round_to=round_to, sensitivity=curves
            )
        except graphopt.InputError as error:
            verdicts.append(f"{name}: no sensitivity allocation at round_to={round_to}: {error}")
            continue
        for budget in UNIFORM_BUDGETS:
            graphs[f"uniform flops<={budget}"], _ = graphopt.prune(graph, flops=budget, round_to=round_to)
        ms = interleaved_ms(graphs)
        results = {}
        for key, g in sorted(graphs.items(), key=lambda item: ms[item[0]]):
            flops = g.stats().flops / graph.stats().flops
            top1 = accuracy(g.module, data["x_test"], data["y_test"])
            tuned = recovered(g, graph.module, data, 3) if key != "unpruned" else top1
            results[key] = (ms[key], top1, tuned)
            lines.append(f"| {name} | {key} | {flops:.3f} | {ms[key]:.4f} | {top1:.3f} | {tuned:.3f} |")
            print(lines[-1], flush=True)
        chosen = results["sensitivity flops<=0.5"]
        rivals = [(k, v) for k, v in results.items() if k.startswith("uniform") and v[0] >= chosen[0]]
        if not rivals:
            verdicts.append(f"{name}: every uniform candidate measured faster than the sensitivity one; no comparison")
            continue
        key, rival = min(rivals, key=lambda kv: kv[1][0])  # the fastest uniform that is not faster
        outcome = "beats" if chosen[2] > rival[2] else "ties" if chosen[2] == rival[2] else "loses to"
        verdicts.append(
            f"{name}: sensitivity ({chosen[0]:.4f} ms, {chosen[2]:.3f} after 3 ep, {chosen[1]:.3f} as pruned) "
            f"{outcome} {key} ({rival[0]:.4f} ms, not faster: {rival[2]:.3f} after 3 ep, {rival[1]:.3f} as pruned)"
        )
    return [*lines, "", *verdicts]


#: The latency budget of the equal-latency comparison, and the uniform ratios searched to match it.
SPEEDUP = 1.25
UNIFORM_RATIOS = tuple(round(0.05 * k, 2) for k in range(1, 19))
UNIFORM_CANDIDATES = 4


def bench_equal_latency(round_to: int = 8) -> list[str]:
    """Sensitivity allocation under ``speedup=SPEEDUP`` against the uniform ratio of closest measured latency."""
    from graphopt.pruning.structured import measure_latencies

    data = digits_data()
    images = data["x_train"][:RECALIBRATION]
    lines = [
        "| model | candidate | FLOPs | params | compiled ms (median) | vs unpruned | top-1 BN re-measured | recover 3 ep |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts, details = [], []
    for name, factory in DIGITS_MODELS.items():
        started = time.perf_counter()
        graph = graphopt.capture(factory(), data["x_test"][:1])
        curves = graphopt.sensitivity(
            graph,
            levels=(0.25, 0.5, 0.75),
            calibration_inputs=images,
            recalibrate=images,
            round_to=round_to,
            measure=True,
        )
        print(f"{name}: curves in {time.perf_counter() - started:.0f} s", flush=True)
        try:
            chosen, report = graphopt.prune(
                graph, speedup=SPEEDUP, round_to=round_to, sensitivity=curves, recalibrate=images
            )
        except graphopt.InputError as error:
            verdicts.append(f"{name}: no sensitivity allocation at speedup {SPEEDUP}: {error}")
            print(verdicts[-1], flush=True)
            continue
        details.append(f"{name} allocation steps:\n" + report.table())
        print(details[-1], flush=True)
        graphs = {"unpruned": graph, f"sensitivity speedup>={SPEEDUP}": chosen}
        uniform_graphs: dict[tuple[int, ...], tuple[float, graphopt.Graph]] = {}
        for ratio in UNIFORM_RATIOS:
            candidate, _ = graphopt.prune(graph, ratio=ratio, round_to=round_to)
            uniform_graphs.setdefault(_widths(candidate), (ratio, candidate))
        target_flops = chosen.stats().flops
        nearest = sorted(uniform_graphs.values(), key=lambda rc: abs(rc[1].stats().flops / target_flops - 1))
        for ratio, candidate in nearest[:UNIFORM_CANDIDATES]:  # compiling is the cost: the few nearest in FLOPs
            graphs[f"uniform ratio {ratio}"] = candidate
        cache: dict[Any, Any] = {}
        keys = list(graphs)
        ms = dict(zip(keys, measure_latencies([graphs[k] for k in keys], "cpu", rounds=9, cache=cache), strict=True))
        sens_key = keys[1]
        uniform = min((k for k in keys if k.startswith("uniform")), key=lambda k: abs(ms[k] / ms[sens_key] - 1))
        # the matched pair re-timed on its own, interleaved with the unpruned model
        pair = measure_latencies([graph, chosen, graphs[uniform]], "cpu", rounds=9, cache=cache)
        results = {}
        for key in ("unpruned", sens_key, uniform):
            g = graphs[key]
            if key == "unpruned":
                top1 = tuned = accuracy(g.module, data["x_test"], data["y_test"])
            else:
                module = copy.deepcopy(g.module)
                graphopt.pruning.recalibrate(module, images)
                top1 = accuracy(module, data["x_test"], data["y_test"])
                tuned = recovered(g, graph.module, data, 3)
            results[key] = (top1, tuned)
        before = graph.stats()
        for key in keys:
            after = graphs[key].stats()
            top1, tuned = results.get(key, (None, None))
            accuracy_cells = f"{top1:.3f} | {tuned:.3f}" if top1 is not None else "- | -"
            lines.append(
                f"| {name} | {key} | {after.flops / before.flops:.3f} | {after.params / before.params:.3f} | "
                f"{ms[key]:.4f} | {ms[key] / ms['unpruned']:.2f} | {accuracy_cells} |"
            )
            print(lines[-1], flush=True)
        (s_top1, s_tuned), (u_top1, u_tuned) = results[sens_key], results[uniform]
        gap = ms[uniform] / ms[sens_key] - 1
        outcome = "beats" if s_tuned > u_tuned else "ties" if s_tuned == u_tuned else "loses to"
        verdicts.append(
            f"{name}: sensitivity {outcome} {uniform} after 3 epochs ({s_tuned:.3f} vs {u_tuned:.3f}; BN re-measured "
            f"{s_top1:.3f} vs {u_top1:.3f}); latency gap {100 * gap:+.1f}% in the sweep, re-timed as a pair: "
            f"unpruned {pair[0]:.4f}, sensitivity {pair[1]:.4f}, uniform {pair[2]:.4f} ms "
            f"({100 * (pair[2] / pair[1] - 1):+.1f}%); widths sensitivity {_widths(chosen)}, uniform "
            f"{_widths(graphs[uniform])}, unpruned {_widths(graph)}; {time.perf_counter() - started:.0f} s"
        )
        print(verdicts[-1], flush=True)
    return [*lines, "", *verdicts, "", *details]


def _widths(graph: graphopt.Graph) -> tuple[int, ...]:
    """Output channels of every Conv/Linear, in graph order (what decides the compiled kernels)."""
    return tuple(m.out_channels if hasattr(m, "out_channels") else m.out_features for m in _layers(graph))


def _layers(graph: graphopt.Graph) -> list[Any]:
    return [m for m in graph.module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["resnet18", "digits", "latency", "equal-latency"])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.only in (None, "resnet18"):
        print("\n".join(bench_resnet18()), flush=True)
        print()
    if args.only in (None, "digits"):
        print("\n".join(bench_digits()), flush=True)
        print()
    if args.only in (None, "latency"):
        print("\n".join(bench_latency()), flush=True)
    if args.only in (None, "equal-latency"):
        print("\n".join(bench_equal_latency()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
