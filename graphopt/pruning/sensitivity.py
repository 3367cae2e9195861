"""Sensitivity analysis: prune one dependency group at a time at several levels, record the damage.

For every group and level, a copy of the graph loses that fraction of the group's channels (the
lowest-ranked by ``importance``) and nothing else; the row records its FLOPs and parameters
relative to the unpruned graph and a metric: ``evaluate(module)`` when given (accuracy, loss...),
else the *fidelity error*, ``max |y - y_pruned| / max |y|`` on the calibration inputs (0 is
perfect). ``measure=True`` adds the latency of the compiled candidate on ``target``. Distiller's
sensitivity CSV is the shape of ``to_csv``: one row per (group, level).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from graphopt.errors import InputError
from graphopt.ir import Graph
from graphopt.numerics import relative_error
from graphopt.pruning.batch_norm import recalibrate as recalibrate_batch_norm
from graphopt.pruning.dependency import analyze
from graphopt.pruning.importance import kept_units, scores, select
from graphopt.pruning.shrink import shrink
from graphopt.pruning.structured import as_graph, evaluate_metric, measure_latency
from graphopt.pruning.sweep import CandidateSweep


@dataclass
class SensitivityRow:
    """One candidate: ``group`` pruned at ``level`` (fraction of its channels removed)."""

    group: int
    layer: str  # the group's first producer, to name it in tables and plots
    level: float
    channels: int
    kept: int
    flops: float  # relative to the unpruned graph
    params: float
    metric: float
    latency_ms: float | None = None


@dataclass
class SensitivityReport:
    """All rows, the metric's name, and the unpruned graph's metric and latency."""

    model: str
    metric: str
    baseline: float
    higher_is_better: bool = True
    baseline_latency_ms: float | None = None
    rows: list[SensitivityRow] = field(default_factory=list)

    def loss(self, row: SensitivityRow | None) -> float:
        """How much worse than unpruned a row is (0 for ``None``, the unpruned point); never negative."""
        if row is None:
            return 0.0
        delta = self.baseline - row.metric if self.higher_is_better else row.metric - self.baseline
        return max(delta, 0.0)

    def curve(self, group: int) -> list[tuple[float, float]]:
        """(level, metric) points of one group, with the unpruned point (0, baseline) first."""
        return [(0.0, self.baseline)] + [(r.level, r.metric) for r in self.rows if r.group == group]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "baseline": self.baseline,
            "higher_is_better": self.higher_is_better,
            "baseline_latency_ms": self.baseline_latency_ms,
            "rows": [asdict(r) for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityReport:
        rows = [SensitivityRow(**row) for row in data["rows"]]
        return cls(
            data["model"], data["metric"], data["baseline"], data["higher_is_better"], data["baseline_latency_ms"], rows
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_csv(self) -> str:
        """One line per (group, level): group, layer, level, channels, kept, flops, params, metric, latency_ms."""
        buffer = io.StringIO()
        names = list(SensitivityRow.__dataclass_fields__)
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow(asdict(row))
        return buffer.getvalue()

    def plot(self, path: str | Path) -> Path:
        """One curve per group (metric against the fraction removed), written as PNG or SVG by its suffix."""
        path = Path(path)
        if path.suffix.lower() not in (".png", ".svg"):
            raise InputError(f"plot {path}: name it *.png or *.svg")
        try:
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot
        except ImportError as error:
            raise InputError("plotting needs matplotlib (pip install matplotlib)") from error
        figure, axes = pyplot.subplots(figsize=(7, 4.5))
        for group in sorted({r.group for r in self.rows}):
            layer = next(r.layer for r in self.rows if r.group == group)
            levels, metrics = zip(*self.curve(group), strict=True)
            axes.plot(levels, metrics, marker="o", label=f"{group}: {layer}")
        axes.set_xlabel("fraction of the group's channels removed")
        axes.set_ylabel(self.metric)
        axes.set_title(f"sensitivity of {self.model}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small", ncol=2)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        pyplot.close(figure)
        return path

    def table(self) -> str:
        lines = [
            f"sensitivity of {self.model}: {self.metric} (unpruned {self.baseline:.4g})",
            f"{'group':>5}  {'layer':<28}  {'level':>5}  {'kept':>9}  {'FLOPs':>6}  {'params':>6}  {self.metric:>12}"
            + ("  latency ms" if self.baseline_latency_ms is not None else ""),
        ]
        for r in self.rows:
            line = (
                f"{r.group:>5}  {r.layer[:28]:<28}  {r.level:>5.2f}  {f'{r.kept}/{r.channels}':>9}  "
                f"{r.flops:>6.3f}  {r.params:>6.3f}  {r.metric:>12.4g}"
            )
            if r.latency_ms is not None:
                line += f"  {r.latency_ms:>10.3f}"
            lines.append(line)
        return "\n".join(lines)


def _fidelity(graph: Graph, inputs: tuple[torch.Tensor, ...]) -> Callable[[Any], float]:
    with torch.no_grad():
        reference = graph.module(*inputs)

    def error(module: Any) -> float:
        with torch.no_grad():
            return relative_error(reference, module(*inputs))

    return error


def sensitivity(
    model_or_graph: Any,
    example_inputs: Any = None,
    *,
    levels: Sequence[float] = (0.25, 0.5, 0.75),
    importance: str = "l1",
    round_to: int = 1,
    evaluate: Callable[[Any], float] | None = None,
    metric_name: str | None = None,
    higher_is_better: bool = True,
    calibration_inputs: Any = None,
    ignore: Iterable[str] = (),
    groups: Iterable[int] | None = None,
    measure: bool = False,
    target: str = "cpu",
    jobs: int = 1,
    rpc: str | None = None,
    seed: int = 0,
    data: Any = None,
    loss: Callable[..., Any] | None = None,
    recalibrate: Any = None,
    cache_dir: str | Path | None = None,
) -> SensitivityReport:
    """Prune each group (or those in ``groups``) alone at each of ``levels``; see the module docstring.

    ``higher_is_better`` says which way ``evaluate``'s metric improves (True for accuracy);
    ``data``/``loss`` are for ``importance="taylor"`` (see ``graphopt.prune``). ``recalibrate``
    (unlabelled inputs, e.g. a few hundred training images) re-measures every candidate's BatchNorm
    statistics before its metric is taken (``graphopt.pruning.recalibrate``). With ``cache_dir``
    the report is stored under a key of the graph (structure and weights), the inputs and every
    option, so a second identical run is read back instead of recomputed; ``evaluate`` enters the
    key by its qualified name only, so change its name when its data changes.

    With ``measure``, ``jobs=N`` compiles the candidates in N worker processes while the sweep goes
    on (timed here afterwards, one at a time, interleaved), and ``rpc`` ("HOST:PORT" of a TVM RPC
    server, or "KEY@TRACKER:PORT") times them on that remote device instead (``graphopt.pruning.sweep``).

    >>> report = graphopt.pruning.sensitivity(model, torch.randn(1, 1, 28, 28), levels=(0.25, 0.5, 0.75))
    >>> print(report.table()); Path("sens.csv").write_text(report.to_csv())
    """
    levels = [float(level) for level in levels]
    if not levels or any(not 0 < level < 1 for level in levels):
        raise InputError(f"sensitivity levels must lie strictly between 0 and 1, got {levels}")
    if not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"jobs must be a positive integer, got {jobs!r}")
    graph = as_graph(model_or_graph, example_inputs)
    ignore = list(ignore)
    key = None
    if cache_dir is not None:
        options = [levels, importance, round_to, metric_name, higher_is_better, sorted(ignore), groups, measure]
        options += [target, seed, _name_of(evaluate), _name_of(loss)] + ([rpc] if rpc else [])
        key = _cache_key(graph, calibration_inputs, data, recalibrate, options)
        cached = Path(cache_dir) / f"{key}.json"
        if cached.is_file():
            return SensitivityReport.from_dict(json.loads(cached.read_text()))
    analysis = analyze(graph, ignore=ignore)
    if not analysis.groups:
        raise InputError(f"nothing to prune in {graph.name}: no channel group can be removed")
    wanted = set(groups) if groups is not None else {g.index for g in analysis.groups}
    unknown = wanted - {g.index for g in analysis.groups}
    if unknown:
        raise InputError(f"no group {sorted(unknown)[0]} (the graph has groups 0..{len(analysis.groups) - 1})")
    if evaluate is None:
        inputs = graph.example_inputs
        if calibration_inputs is not None:
            from graphopt.capture import normalize_inputs

            inputs = normalize_inputs(calibration_inputs)
        evaluate, metric_name, higher_is_better = _fidelity(graph, inputs), "fidelity error", False
    baseline = evaluate_metric(evaluate, graph)
    assert baseline is not None
    report = SensitivityReport(graph.name, metric_name or "metric", baseline, higher_is_better)
    sweep = CandidateSweep(target, jobs=jobs, rpc=rpc) if measure and (jobs > 1 or rpc) else None
    try:
        if sweep is not None:
            sweep.submit(graph)
        elif measure:
            report.baseline_latency_ms = measure_latency(graph, target)

        def timed(row: SensitivityRow, candidate: Graph) -> None:
            if sweep is not None:
                sweep.submit(candidate)  # its latency comes back in the rows' order
            elif measure:
                row.latency_ms = measure_latency(candidate, target)

        unit_scores = scores(analysis, importance, seed=seed, data=data, loss=loss)
        twins = _sweep(
            report, graph, analysis, unit_scores, evaluate, levels, wanted, round_to, ignore, timed, recalibrate
        )
        if sweep is not None:
            report.baseline_latency_ms, *latencies = sweep.latencies()
            built = [row for row in report.rows if id(row) not in twins]
            for row, milliseconds in zip(built, latencies, strict=True):
                row.latency_ms = milliseconds
            for row in report.rows:
                if id(row) in twins:
                    row.latency_ms = twins[id(row)].latency_ms
    finally:
        if sweep is not None:
            sweep.close()
    if cache_dir is not None:
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{key}.tmp"
        temporary.write_text(report.to_json())
        temporary.replace(folder / f"{key}.json")
    return report


def _sweep(
    report: SensitivityReport,
    graph: Graph,
    analysis: Any,
    unit_scores: dict[int, float],
    evaluate: Callable[[Any], float],
    levels: list[float],
    wanted: set[int],
    round_to: int,
    ignore: list[str],
    timed: Callable[[SensitivityRow, Graph], None],
    recalibration: Any,
) -> dict[int, SensitivityRow]:
    """One row per (group, level): the candidate built and its metric taken; ``timed`` sees to its latency.

    A level that keeps as many channels as an earlier one of its group (``round_to`` rounds both to
    one count) is the same graph: its row copies the earlier one's instead of compiling it again.
    Returns those copies (by id) -> the row they copy, whose latency a parallel sweep fills in later.
    """
    before = graph.stats()
    twins: dict[int, SensitivityRow] = {}
    for group in analysis.groups:
        if group.index not in wanted:
            continue
        layer = next(name for name, side in group.layers if side == "out")
        earlier: dict[int, SensitivityRow] = {}
        for level in levels:
            keep = kept_units(group, level, round_to)
            if keep == group.size:
                continue
            if keep in earlier:
                twin = replace(earlier[keep], level=level)
                twins[id(twin)] = earlier[keep]
                report.rows.append(twin)
                continue
            removed = select(analysis, unit_scores, {group.index: level}, round_to)
            candidate = graph.copy()
            shrink(analyze(candidate, ignore=ignore), removed)
            if recalibration is not None:
                recalibrate_batch_norm(candidate.module, recalibration)
            stats = candidate.stats()
            row = SensitivityRow(
                group.index,
                layer,
                level,
                group.size,
                keep,
                stats.flops / max(before.flops, 1),
                stats.params / max(before.params, 1),
                evaluate_metric(evaluate, candidate) or 0.0,
            )
            timed(row, candidate)
            report.rows.append(row)
            earlier[keep] = row
    return twins


def _name_of(function: Any) -> str | None:
    if function is None:
        return None
    return f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"


def _cache_key(graph: Graph, *extra: Any) -> str:
    """A digest of the graph's code, its tensors, its example inputs and ``extra`` (tensors hashed by value)."""
    digest = hashlib.sha256(graph.module.code.encode())

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().contiguous().cpu()
            digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, (list, tuple)):
            for item in value:
                feed(item)
        else:
            digest.update(repr(value).encode())

    feed([t for _, t in sorted(graph.module.state_dict().items())])
    feed(list(graph.example_inputs))
    feed(list(extra))
    return digest.hexdigest()[:32]


def allocation_moves(report: SensitivityReport, budget: str) -> list[tuple[int, float]]:
    """Per-group levels in the order a budget should take them: least metric loss per unit saved first.

    ``budget`` is ``flops`` or ``params``. Each group's levels are taken in increasing order; among
    the groups' next levels, the one whose extra loss per extra fraction saved is smallest comes
    next (a greedy walk down the curves, treating the groups' savings as additive). Among equally
    cheap moves the one leaving its group least pruned comes first: where the curves cannot tell
    groups apart (an accuracy that stays at the baseline), a budget crossed among them is met by
    pruning them evenly, not by taking the first such group down to its last level. A metric that
    saturates (top-1 on the data the model was trained on) reads every such move as free: prefer
    a graded one (the fidelity error, a loss) for the curves.
    """
    by_group: dict[int, list[SensitivityRow]] = {}
    for row in report.rows:
        by_group.setdefault(row.group, []).append(row)
    for rows in by_group.values():
        rows.sort(key=lambda r: r.level)
    position = dict.fromkeys(by_group, -1)
    moves: list[tuple[int, float]] = []
    while True:
        best: tuple[float, float, int] | None = None
        for group, rows in by_group.items():
            if position[group] + 1 >= len(rows):
                continue
            current = rows[position[group]] if position[group] >= 0 else None
            following = rows[position[group] + 1]
            saved = (getattr(current, budget) if current else 1.0) - getattr(following, budget)
            cost = (report.loss(following) - report.loss(current)) / max(saved, 1e-9)
            candidate = (cost, following.level, group)
            if best is None or candidate < best:
                best = candidate
        if best is None:
            return moves
        group = best[2]
        position[group] += 1
        moves.append((group, by_group[group][position[group]].level))


def latency_moves(report: SensitivityReport) -> list[tuple[int, float]]:
    """Per-group levels in the order a latency budget should take them: least loss per ms saved first.

    Like ``allocation_moves`` but on the curves' measured latency (``measure=True``), which is not
    monotone: a narrower width can compile to a slower kernel. So a group's next move may skip
    levels, to whichever deeper level (measured faster than its current one) is cheapest per ms,
    and levels that keep the same channel count as an earlier one are dropped (same graph).
    """
    if report.baseline_latency_ms is None or any(r.latency_ms is None for r in report.rows):
        raise InputError("a latency budget needs sensitivity curves with measured latency (measure=True)")
    by_group: dict[int, list[SensitivityRow]] = {}
    for row in sorted(report.rows, key=lambda r: r.level):
        rows = by_group.setdefault(row.group, [])
        if all(r.kept != row.kept for r in rows):
            rows.append(row)
    state: dict[int, tuple[int, float, float]] = {g: (-1, report.baseline_latency_ms, 0.0) for g in by_group}
    moves: list[tuple[int, float]] = []
    while True:
        best: tuple[float, float, int, int] | None = None
        for group, rows in by_group.items():
            position, milliseconds, loss = state[group]
            for index in range(position + 1, len(rows)):
                saved = milliseconds - (rows[index].latency_ms or 0.0)
                if saved > 0:
                    candidate = ((report.loss(rows[index]) - loss) / saved, rows[index].level, group, index)
                    best = candidate if best is None or candidate < best else best
        if best is None:
            return moves
        _, level, group, index = best
        row = by_group[group][index]
        state[group] = (index, row.latency_ms or 0.0, report.loss(row))
        moves.append((group, level))
