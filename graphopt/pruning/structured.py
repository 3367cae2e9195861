"""``graphopt.prune``: structured pruning to a channel ratio or a FLOPs/parameter budget.

One step: analyse the dependency groups of the current graph, score their units, remove the
lowest ``ratio`` of every group (a multiple of ``round_to`` kept), shrink the tensors. A budget
(``flops=0.5``: at most half the FLOPs) is met by bisecting the uniform ratio, each candidate built
and counted for real. ``steps > 1`` reaches the target in equal geometric steps, re-scoring the
pruned graph each time and calling ``finetune`` between steps. The user's model is never changed.

With a sensitivity report, per-group levels replace the uniform ratio: for ``flops``/``params``
taken cheapest per FLOP (parameter) saved; for a latency budget (``speedup``, ``latency_ms``)
cheapest per *measured* millisecond saved, every move compiled and timed against the model before
it, and kept only when it is not slower (``_allocate_latency``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphopt.errors import GraphoptError, InputError
from graphopt.ir import Graph, GraphStats
from graphopt.passes._layers import remove_unused_attributes
from graphopt.pruning.batch_norm import recalibrate as recalibrate_batch_norm
from graphopt.pruning.dependency import analyze
from graphopt.pruning.importance import IMPORTANCE, scores, select
from graphopt.pruning.shrink import shrink
from graphopt.pruning.sweep import time_interleaved

#: Ratio bisection stops when the bracket is this narrow (1/4096 of the channels is below any rounding step).
_BISECTION_STEPS = 12
_MAX_RATIO = 0.999
#: Bisection steps when every candidate is compiled and timed (the ratio is then known to 1/64).
_LATENCY_STEPS = 6


@dataclass
class PruneStep:
    """One prune step: the uniform ratio used, the graph's size after it, metric and latency if asked."""

    step: int
    ratio: float
    stats: GraphStats
    channels: dict[str, tuple[int, int]]  # group label -> (before, after)
    metric: float | None = None
    latency_ms: float | None = None
    #: A latency allocation's step: the model before it and the unpruned one, timed in the same run.
    previous_ms: float | None = None
    unpruned_ms: float | None = None
    move: str | None = None  # e.g. "group 2 (conv2) -> 0.5"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "ratio": round(self.ratio, 6),
            "stats": self.stats.to_dict(),
            "channels": {k: list(v) for k, v in self.channels.items()},
            "metric": self.metric,
            "latency_ms": self.latency_ms,
            "previous_ms": self.previous_ms,
            "unpruned_ms": self.unpruned_ms,
            "move": self.move,
        }


@dataclass
class PruneReport:
    """What ``prune`` did: the budget, the size before, one record per step, notes."""

    model: str
    budget: str
    importance: str
    round_to: int
    before: GraphStats
    metric_before: float | None = None
    latency_before_ms: float | None = None
    steps: list[PruneStep] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The result re-timed with the unpruned model at the end (a latency allocation's steps keep their own).
    latency_after_ms: float | None = None

    @property
    def after(self) -> GraphStats:
        return self.steps[-1].stats if self.steps else self.before

    @property
    def speedup(self) -> float | None:
        last = self.latency_after_ms or (self.steps[-1].latency_ms if self.steps else None)
        return self.latency_before_ms / last if last and self.latency_before_ms else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "budget": self.budget,
            "importance": self.importance,
            "round_to": self.round_to,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "metric_before": self.metric_before,
            "latency_before_ms": self.latency_before_ms,
            "latency_after_ms": self.latency_after_ms,
            "speedup": self.speedup,
            "steps": [s.to_dict() for s in self.steps],
            "notes": self.notes,
        }

    def table(self) -> str:
        """A plain-text table: one row before pruning, one per step."""
        header = f"{'step':>4}  {'ratio':>6}  {'params':>12}  {'MFLOPs':>10}  {'metric':>9}  {'latency ms':>10}"
        rows = [f"prune {self.model}: {self.budget}, importance {self.importance}, round_to {self.round_to}", header]

        def row(label: str, ratio: str, stats: GraphStats, metric: float | None, latency: float | None) -> str:
            metric_text = f"{metric:.4g}" if metric is not None else "-"
            latency_text = f"{latency:.3f}" if latency is not None else "-"
            return (
                f"{label:>4}  {ratio:>6}  {stats.params:>12,}  {stats.flops / 1e6:>10.2f}  "
                f"{metric_text:>9}  {latency_text:>10}"
            )

        rows.append(row("-", "0", self.before, self.metric_before, self.latency_before_ms))
        for step in self.steps:
            line = row(str(step.step), f"{step.ratio:.3f}", step.stats, step.metric, step.latency_ms)
            if step.move is not None:
                line += f"  {step.move} (before it {step.previous_ms:.3f} ms, unpruned {step.unpruned_ms:.3f} ms)"
            rows.append(line)
        after, before = self.after, self.before
        summary = f"params {after.params / before.params:.3f}x, FLOPs {after.flops / max(before.flops, 1):.3f}x"
        if self.speedup is not None:
            summary += f", compiled latency {self.speedup:.2f}x faster"
            if self.latency_after_ms is not None:
                summary += f" ({self.latency_before_ms:.3f} -> {self.latency_after_ms:.3f} ms, re-timed together)"
        rows.append(summary)
        return "\n".join(rows)


def as_graph(model_or_graph: Any, example_inputs: Any) -> Graph:
    """A copy of the graph to prune, holding only the tensors its nodes read.

    A captured model can carry weights its forward never reads (BERT's pooler when only
    ``last_hidden_state`` is returned); counting them before, and not after, would credit pruning
    with their removal.
    """
    if isinstance(model_or_graph, Graph):
        graph = model_or_graph.copy()
    else:
        from graphopt.capture import capture

        if example_inputs is None:
            raise InputError("prune needs example_inputs to capture the model")
        graph = capture(model_or_graph, example_inputs)
    remove_unused_attributes(graph.module)
    return graph


#: Budgets on the measured latency of the compiled candidates.
LATENCY_BUDGETS = ("speedup", "latency_ms")


def _budget(
    ratio: float | None, flops: float | None, params: float | None, speedup: float | None, latency_ms: float | None
) -> tuple[str, float]:
    named = (("ratio", ratio), ("flops", flops), ("params", params), ("speedup", speedup), ("latency_ms", latency_ms))
    given = {name: value for name, value in named if value is not None}
    if len(given) != 1:
        raise InputError(
            "give exactly one of ratio=, flops=, params=, speedup= or latency_ms= "
            "(e.g. flops=0.5 keeps at most half the FLOPs)"
        )
    ((name, value),) = given.items()
    if name == "speedup":
        if not isinstance(value, (int, float)) or value <= 1:
            raise InputError(f"speedup must be above 1 (2.0: twice as fast), got {value}")
    elif name == "latency_ms":
        if not isinstance(value, (int, float)) or value <= 0:
            raise InputError(f"latency_ms must be a positive number of milliseconds, got {value}")
    elif not isinstance(value, (int, float)) or not 0 < value < 1:
        raise InputError(f"{name} must lie strictly between 0 and 1, got {value}")
    return name, float(value)


@dataclass(frozen=True)
class Criterion:
    """How units are ranked: the importance name and what it needs (seed; data and loss for taylor)."""

    importance: str
    seed: int = 0
    data: Any = None
    loss: Callable[..., Any] | None = None

    def scores(self, analysis: Any) -> dict[int, float]:
        return scores(analysis, self.importance, seed=self.seed, data=self.data, loss=self.loss)


def _prune_at(
    graph: Graph, ratio: float | dict[int, float], criterion: Criterion, round_to: int, ignore: Sequence[str]
) -> Graph:
    """A pruned copy of ``graph``: every group at ``ratio`` (or group index -> ratio)."""
    work = graph.copy()
    analysis = analyze(work, ignore=ignore)
    unit_scores = criterion.scores(analysis)
    ratios = ratio if isinstance(ratio, dict) else {g.index: ratio for g in analysis.groups}
    removed = select(analysis, unit_scores, ratios, round_to)
    return shrink(analysis, removed) if removed else work


def measure_latency(graph: Graph, target: str, cache: dict[Graph, Any] | None = None) -> float:
    """Median milliseconds per run of ``graph`` compiled for ``target`` (O2), on its example inputs."""
    return measure_latencies([graph], target, cache=cache)[0]


def measure_latencies(
    graphs: Sequence[Graph], target: str, *, rounds: int = 5, cache: dict[Graph, Any] | None = None
) -> list[float]:
    """Median milliseconds per run of each graph, timed interleaved round by round after a warm-up
    call: on a shared machine a load spike then hits every graph alike, instead of whichever one
    happened to be timing (timed one after the other, an unpruned digits CNN once read 20x slower
    than its pruned copy). ``cache`` keeps compiled models by graph so a re-timing does not rebuild."""
    from graphopt.api import compile as compile_graph

    cache = {} if cache is None else cache
    for graph in graphs:
        if graph not in cache:
            cache[graph] = compile_graph(graph, graph.example_inputs, target=target)
    inputs = [[t.numpy() for t in graph.example_inputs] for graph in graphs]
    return time_interleaved([cache[graph] for graph in graphs], inputs, rounds=rounds)


def evaluate_metric(evaluate: Callable[[Any], float] | None, graph: Graph) -> float | None:
    if evaluate is None:
        return None
    try:
        return float(evaluate(graph.module))
    except GraphoptError:
        raise
    except Exception as error:
        raise GraphoptError(
            f"the evaluation function raised {type(error).__name__}: {error}".splitlines()[0]
        ) from error


def prune(
    model_or_graph: Any,
    example_inputs: Any = None,
    *,
    ratio: float | None = None,
    flops: float | None = None,
    params: float | None = None,
    speedup: float | None = None,
    latency_ms: float | None = None,
    importance: str = "l1",
    round_to: int = 8,
    ignore: Iterable[str] = (),
    steps: int = 1,
    seed: int = 0,
    finetune: Callable[[Any], Any] | None = None,
    evaluate: Callable[[Any], float] | None = None,
    measure: bool = False,
    target: str = "cpu",
    sensitivity: Any = None,
    data: Any = None,
    loss: Callable[..., Any] | None = None,
    recalibrate: Any = None,
) -> tuple[Graph, PruneReport]:
    """Prune channels of ``model_or_graph``; returns ``(graph, report)`` like ``graphopt.optimize``.

    Give one of ``ratio`` (remove that fraction of every group's channels), ``flops`` or ``params``
    (keep at most that fraction of the original), ``speedup`` (the compiled model on ``target``
    at least that many times faster, measured for every candidate) or ``latency_ms`` (at most that
    many milliseconds per run on ``target``, measured). ``importance`` is one of l1, l2, bn_scale,
    taylor (needs ``data=(inputs, targets)``, ``loss`` default cross-entropy), random (seeded
    by ``seed``); kept channel counts are multiples of ``round_to``. ``ignore`` names
    layers whose output channels stay. ``finetune(module)`` runs after every step on the pruned
    ``fx.GraphModule`` (trainable); ``evaluate(module) -> float`` is recorded before and after each
    step; ``measure=True`` compiles before and after each step for ``target`` and times it.
    ``sensitivity`` (a ``SensitivityReport`` of the same graph) replaces the uniform ratio by
    per-group levels taken from its curves, least metric loss per FLOP (or parameter) saved first;
    under ``speedup``/``latency_ms`` (curves measured with ``measure=True`` at this ``round_to``)
    least loss per measured millisecond saved, one step per group move, each compiled and timed
    with the model before it and kept only if not slower (``PruneStep.previous_ms``).
    ``recalibrate`` (unlabelled inputs) re-measures the BatchNorm statistics of each step's pruned
    graph before ``finetune`` and ``evaluate`` see it (``graphopt.pruning.recalibrate``).

    >>> pruned, report = graphopt.prune(model, torch.randn(1, 3, 224, 224), flops=0.5)
    >>> compiled = graphopt.compile(pruned, pruned.example_inputs)
    """
    name, value = _budget(ratio, flops, params, speedup, latency_ms)
    measure = measure or name in LATENCY_BUDGETS
    if importance not in IMPORTANCE:
        raise InputError(f"unknown importance '{importance}' (choose {', '.join(IMPORTANCE)})")
    if not isinstance(round_to, int) or round_to < 1:
        raise InputError(f"round_to must be a positive integer, got {round_to}")
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, got {steps}")
    ignore = list(ignore)
    graph = as_graph(model_or_graph, example_inputs)
    analysis = analyze(graph, ignore=ignore)
    if not analysis.groups:
        reasons = sorted(set(analysis.why_fixed.values()))[:3]
        raise InputError(
            f"nothing to prune in {graph.name}: no channel group can be removed"
            + (f" (channels are fixed because they: {'; '.join(reasons)})" if reasons else " (no Conv/Linear layers)")
        )
    if sensitivity is not None:
        _check_sensitivity(sensitivity, analysis, name, steps, round_to)
    budget = {
        "ratio": f"ratio {value}",
        "speedup": f"speedup >= {value}x on {target}",
        "latency_ms": f"latency <= {value} ms on {target}",
    }.get(name, f"{name} <= {value}x")
    if sensitivity is not None:
        budget += f", allocated by sensitivity ({sensitivity.metric})"
    report = PruneReport(graph.name, budget, importance, round_to, graph.stats())
    if sensitivity is not None:
        report.notes.extend(_saturation_note(sensitivity))
    report.metric_before = evaluate_metric(evaluate, graph)
    compiled: dict[Graph, Any] = {}
    if measure:
        report.latency_before_ms = measure_latencies([graph], target, cache=compiled)[0]
    if importance == "taylor" and data is None:
        raise InputError("taylor importance needs data=(inputs, targets): one batch and its labels")

    def criterion(step: int) -> Criterion:
        return Criterion(importance, seed + step, data, loss)

    measured: dict[Graph, float] = {}  # keyed by the Graph object itself (ids of freed candidates get reused)

    def latency(candidate: Graph) -> float:
        """The candidate's milliseconds, timed interleaved with the unpruned model and scaled to its
        first reading: a load spike during one timing no longer reads as a met budget."""
        if candidate not in measured:
            assert report.latency_before_ms is not None
            unpruned_ms, candidate_ms = measure_latencies([graph, candidate], target, cache=compiled)
            measured[candidate] = candidate_ms * report.latency_before_ms / unpruned_ms
        return measured[candidate]

    start = time.perf_counter()
    if sensitivity is not None and name in LATENCY_BUDGETS:
        timing = _Timing(graph, target, compiled)
        current = _allocate_latency(
            graph, sensitivity, name, value, criterion(1), round_to, ignore, timing, report, evaluate, recalibrate
        )
        if finetune is not None and report.steps:
            _finetune(finetune, current)
            report.steps[-1].metric = evaluate_metric(evaluate, current)
            report.notes.append("fine-tuned once after the allocation; the last step's metric is after it")
        report.latency_before_ms, report.latency_after_ms = measure_latencies([graph, current], target, cache=compiled)
        report.notes.append("latency before and after re-timed interleaved in one run (latency_after_ms)")
        report.notes.append(f"pruned in {time.perf_counter() - start:.2f} s")
        current.notes.append(f"pruned: {budget} ({importance})")
        return current, report
    current = graph
    for step in range(1, steps + 1):
        if sensitivity is not None:
            goal = getattr(report.before, name) * value
            step_ratio, pruned = _allocate(current, sensitivity, name, goal, criterion(step), round_to, ignore)
        elif name == "ratio":
            step_ratio = 1 - (1 - value) ** (1 / steps)
            pruned = _prune_at(current, step_ratio, criterion(step), round_to, ignore)
        elif name in LATENCY_BUDGETS:
            assert report.latency_before_ms is not None
            final = report.latency_before_ms / value if name == "speedup" else value
            goal = report.latency_before_ms * (final / report.latency_before_ms) ** (step / steps)
            step_ratio, pruned = _bisect(
                current, name, goal, criterion(step), round_to, ignore, size=latency, iterations=_LATENCY_STEPS
            )
        else:
            goal = getattr(report.before, name) * value ** (step / steps)
            step_ratio, pruned = _bisect(current, name, goal, criterion(step), round_to, ignore)
        if recalibrate is not None:
            recalibrate_batch_norm(pruned.module, recalibrate)
        if finetune is not None:
            _finetune(finetune, pruned)
        record = PruneStep(step, step_ratio, pruned.stats(), _channel_changes(current, pruned, ignore))
        record.metric = evaluate_metric(evaluate, pruned)
        if measure:
            record.latency_ms = latency(pruned)  # timed already when the bisection accepted it
            previous = report.steps[-1].latency_ms if report.steps else report.latency_before_ms
            if previous is not None and record.latency_ms > previous:
                report.notes.append(
                    f"step {step} measured slower than the model before it ({record.latency_ms:.3f} > {previous:.3f} ms)"
                )
        report.steps.append(record)
        current = pruned
    if measure and report.steps:  # the figure the user reads: both ends timed side by side
        before_ms, after_ms = measure_latencies([graph, current], target, cache=compiled)
        report.latency_before_ms, report.steps[-1].latency_ms = before_ms, after_ms
        report.notes.append("latency before and after re-timed interleaved in one run")
        if name in LATENCY_BUDGETS and not (before_ms / after_ms >= value if name == "speedup" else after_ms <= value):
            raise InputError(
                f"the {budget} budget is not met: re-timed beside the unpruned model, the best uniform ratio "
                f"({report.steps[-1].ratio:.3f}) runs {after_ms:.3f} ms against {before_ms:.3f} ms "
                f"({before_ms / after_ms:.3f}x); ask for less, or allocate by sensitivity (--allocate sensitivity)"
            )
    report.notes.append(f"pruned in {time.perf_counter() - start:.2f} s")
    current.notes.append(f"pruned: {budget} ({importance})")
    return current, report


def _finetune(finetune: Callable[[Any], Any], graph: Graph) -> None:
    try:
        finetune(graph.module)
    except Exception as error:
        raise GraphoptError(f"the fine-tuning function raised {type(error).__name__}: {error}") from error
    graph.module.eval()
    graph.refresh()


def _check_sensitivity(sensitivity: Any, analysis: Any, name: str, steps: int, round_to: int) -> None:
    from graphopt.pruning.importance import kept_units

    if name == "ratio" or steps != 1:
        raise InputError(
            "allocation by sensitivity needs a flops=, params=, speedup= or latency_ms= budget and steps=1"
        )
    groups = {g.index: g for g in analysis.groups}
    for row in sensitivity.rows:
        group = groups.get(row.group)
        if group is None or group.size != row.channels:
            raise InputError(
                f"the sensitivity report does not match this graph: its group {row.group} has {row.channels} "
                "channels here it has " + str(group.size if group else "no such group")
            )
        if name in LATENCY_BUDGETS and kept_units(group, row.level, round_to) != row.kept:
            raise InputError(
                f"the sensitivity curves were measured at another round_to (group {row.group} keeps {row.kept} at "
                f"level {row.level}, {kept_units(group, row.level, round_to)} with round_to={round_to}): their "
                f"latencies are not this allocation's; measure them with round_to={round_to}"
            )


def _saturation_note(sensitivity: Any) -> list[str]:
    """A note when most of the curves read no loss at all: the allocation then cannot rank those
    groups and takes them all as free (top-1 on the data a model was trained on sits at 100%)."""
    free = sum(1 for row in sensitivity.rows if sensitivity.loss(row) == 0)
    if 2 * free <= len(sensitivity.rows):
        return []
    return [
        f"{free} of {len(sensitivity.rows)} sensitivity rows show no loss of {sensitivity.metric}: the allocation "
        "takes them all as free; a graded metric (the fidelity error, a loss) can rank them"
    ]


def _allocate(
    graph: Graph,
    sensitivity: Any,
    name: str,
    goal: float,
    criterion: Criterion,
    round_to: int,
    ignore: Sequence[str],
) -> tuple[float, Graph]:
    """Take the sensitivity curves' levels, cheapest first, until ``name`` <= ``goal``.

    The move that crosses the budget is then bisected between that group's previous level and its
    new one, so the result lands just under the budget rather than a whole level below it (a fair
    comparison with the uniform ratio, which is bisected too). Returns the mean per-group ratio
    (for the report) and the pruned graph.
    """
    from graphopt.pruning.sensitivity import allocation_moves

    ratios: dict[int, float] = {}
    for group, level in allocation_moves(sensitivity, name):
        previous = ratios.get(group, 0.0)
        ratios[group] = level
        candidate = _prune_at(graph, ratios, criterion, round_to, ignore)
        if getattr(candidate.stats(), name) <= goal:
            lo, hi = previous, level
            for _ in range(_LATENCY_STEPS):
                ratios[group] = (lo + hi) / 2
                middle = _prune_at(graph, ratios, criterion, round_to, ignore)
                if getattr(middle.stats(), name) <= goal:
                    hi, candidate = ratios[group], middle
                else:
                    lo = ratios[group]
            ratios[group] = hi
            return sum(ratios.values()) / len(ratios), candidate
    raise InputError(
        f"the {name} budget cannot be met with the sensitivity levels measured (at most "
        f"{max(r.level for r in sensitivity.rows)} per group); run the sensitivity analysis with higher levels"
    )


class _Timing:
    """Times a candidate with the model before it and the unpruned one, interleaved in one run,
    so a load spike hits all three alike (the comparisons a latency allocation makes)."""

    def __init__(self, unpruned: Graph, target: str, compiled: dict[Graph, Any]) -> None:
        self.unpruned, self.target, self.compiled = unpruned, target, compiled

    def compare(self, current: Graph, candidate: Graph) -> tuple[float, float, float]:
        """(unpruned, current, candidate) milliseconds per run."""
        if current is self.unpruned:
            unpruned_ms, candidate_ms = measure_latencies([self.unpruned, candidate], self.target, cache=self.compiled)
            return unpruned_ms, unpruned_ms, candidate_ms
        unpruned_ms, current_ms, candidate_ms = measure_latencies(
            [self.unpruned, current, candidate], self.target, cache=self.compiled
        )
        return unpruned_ms, current_ms, candidate_ms

    def forget(self, candidate: Graph) -> None:
        self.compiled.pop(candidate, None)


def _allocate_latency(
    graph: Graph,
    sensitivity: Any,
    name: str,
    value: float,
    criterion: Criterion,
    round_to: int,
    ignore: Sequence[str],
    timing: _Timing,
    report: PruneReport,
    evaluate: Callable[[Any], float] | None,
    recalibrate: Any,
) -> Graph:
    """Take the curves' moves (``latency_moves``) one by one until the latency budget holds.

    Each move's candidate is compiled and timed interleaved with the model before it and the
    unpruned one. It becomes a step only when measured no slower than the model before it; a slower
    one is passed over (its group's later, deeper moves are still tried). The budget is judged in
    the same run: ``speedup`` as unpruned / candidate, ``latency_ms`` on the candidate's figure.
    Both verdicts must hold in a second interleaved run too (no compile, a fraction of a second):
    on a loaded machine one run of a sub-millisecond model can read several times too fast or
    too slow, and a single lucky reading once "met" a 1.25x budget that re-timed at 1.02x.
    """
    from graphopt.pruning.sensitivity import latency_moves

    def met(unpruned_ms: float, milliseconds: float) -> bool:
        return unpruned_ms / milliseconds >= value if name == "speedup" else milliseconds <= value

    assert report.latency_before_ms is not None
    if met(report.latency_before_ms, report.latency_before_ms):
        report.notes.append(f"the unpruned model already meets the budget ({report.latency_before_ms:.3f} ms)")
        return graph.copy()
    layers = {row.group: row.layer for row in sensitivity.rows}
    ratios: dict[int, float] = {}
    current, passed_over = graph, 0
    unpruned_ms = current_ms = report.latency_before_ms
    for group, level in latency_moves(sensitivity):
        trial = {**ratios, group: level}
        candidate = _prune_at(graph, trial, criterion, round_to, ignore)
        unpruned_ms, previous_ms, milliseconds = timing.compare(current, candidate)
        if milliseconds <= previous_ms:  # confirmed, and the confirming run is the one recorded
            unpruned_ms, previous_ms, milliseconds = timing.compare(current, candidate)
        if milliseconds > previous_ms:
            passed_over += 1
            timing.forget(candidate)
            report.notes.append(
                f"passed over group {group} -> {level}: {milliseconds:.3f} ms, slower than {previous_ms:.3f} ms before it"
            )
            continue
        if recalibrate is not None:
            recalibrate_batch_norm(candidate.module, recalibrate)
        step = PruneStep(
            len(report.steps) + 1,
            sum(trial.values()) / len(trial),
            candidate.stats(),
            _channel_changes(current, candidate, ignore),
            metric=evaluate_metric(evaluate, candidate),
            latency_ms=milliseconds,
            previous_ms=previous_ms,
            unpruned_ms=unpruned_ms,
            move=f"group {group} ({layers[group]}) -> {level:g}",
        )
        report.steps.append(step)
        ratios, current, current_ms = trial, candidate, milliseconds
        if met(unpruned_ms, milliseconds):
            again, _, confirmed = timing.compare(graph, candidate)
            if met(again, confirmed):
                return current
            report.notes.append(
                f"step {step.step} met the budget once, not when re-timed ({confirmed:.3f} ms, unpruned {again:.3f})"
            )
    raise InputError(
        f"the {report.budget.split(',')[0]} budget cannot be met from these sensitivity curves: the best reached is "
        f"{current_ms:.3f} ms ({unpruned_ms / current_ms:.2f}x the unpruned {unpruned_ms:.3f} ms, timed together) "
        f"after {len(report.steps)} accepted moves ({passed_over} passed over as slower); "
        "measure deeper levels, lower round_to or ask for less"
    )


def _bisect(
    graph: Graph,
    name: str,
    goal: float,
    criterion: Criterion,
    round_to: int,
    ignore: Sequence[str],
    *,
    size: Callable[[Graph], float] | None = None,
    iterations: int = _BISECTION_STEPS,
) -> tuple[float, Graph]:
    """The smallest uniform ratio whose pruned graph's ``size`` (default: stats' flops or params) <= ``goal``.

    For latency (``size`` measures the compiled candidate) a candidate is accepted only when it is
    measured at or below the goal, so no accepted step is slower than the model before it.
    """
    measure = size or (lambda g: float(getattr(g.stats(), name)))
    hi = _MAX_RATIO
    best = _prune_at(graph, hi, criterion, round_to, ignore)
    if measure(best) > goal:
        if name in LATENCY_BUDGETS:
            raise InputError(
                f"the {name} budget cannot be met: with every group at its minimum (round_to={round_to}) the "
                f"compiled model takes {measure(best):.3f} ms, above the goal of {goal:.3f} ms"
            )
        smallest = measure(best) / measure(graph)
        raise InputError(
            f"the {name} budget cannot be met: with every group at its minimum ({round_to} channel(s) with "
            f"round_to={round_to}) the model keeps {smallest:.3f}x of its {name}; ask for more or lower round_to"
        )
    if size is None and measure(graph) <= goal:
        return 0.0, graph.copy()
    lo = 0.0
    for _ in range(iterations):
        middle = (lo + hi) / 2
        candidate = _prune_at(graph, middle, criterion, round_to, ignore)
        if measure(candidate) <= goal:
            hi, best = middle, candidate
        else:
            lo = middle
    return hi, best


def _channel_changes(before: Graph, after: Graph, ignore: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Output channels of each Conv/Linear that changed size: label -> (before, after)."""
    changes: dict[str, tuple[int, int]] = {}
    sizes_after = _widths(after)
    for label, width in _widths(before).items():
        new = sizes_after.get(label)
        if new is not None and new != width:
            changes[label] = (width, new)
    return changes


def _widths(graph: Graph) -> dict[str, int]:
    widths = {}
    for node in graph.module.graph.nodes:
        facts = node.meta.get("graphopt")
        if facts is not None and facts.kind in ("conv1d", "conv2d", "conv3d", "linear") and facts.shape:
            label = str(node.target) if node.op == "call_module" else node.name
            widths[label] = int(facts.shape[1] if facts.kind != "linear" else facts.shape[-1])
    return widths
