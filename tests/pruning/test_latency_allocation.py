"""Allocation under a latency budget (``speedup=`` / ``latency_ms=`` with sensitivity curves).

The compile-and-time step is replaced by a stand-in latency that depends on the layer widths, with
one slow combination of widths, so the walk's invariants are checked exactly and in milliseconds:
every accepted step measured no slower than the model before it, a slower move passed over, the
budget judged against the unpruned model timed alongside, and the one-line error when it cannot be met.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import graphopt
from graphopt.errors import InputError
from graphopt.pruning.sensitivity import SensitivityReport, SensitivityRow, latency_moves
from samples.cnn import DigitsCNN

X = torch.randn(1, 1, 28, 28)
LEVELS = (0.25, 0.5, 0.75)


def widths(graph: graphopt.Graph) -> tuple[int, int]:
    module = graph.module
    return module.get_submodule("conv1").out_channels, module.get_submodule("conv2").out_channels


def stand_in_ms(graph: graphopt.Graph) -> float:
    """0.1 ms plus 1 ms per MFLOP, and 1 ms more for conv1 at 8 with conv2 at 24 (a slow kernel pair)."""
    return 0.1 + graph.stats().flops / 1e6 + (1.0 if widths(graph) == (8, 24) else 0.0)


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []

    def fake(graphs: list[graphopt.Graph], target: str, **_: object) -> list[float]:
        seen.extend(widths(g) for g in graphs)
        return [stand_in_ms(g) for g in graphs]

    monkeypatch.setattr("graphopt.pruning.structured.measure_latencies", fake)
    return seen


def test_a_speedup_budget_walks_the_measured_curves_and_keeps_no_slower_step(timed) -> None:
    model = DigitsCNN().eval()
    curves = graphopt.sensitivity(model, X, levels=LEVELS, round_to=4, measure=True)
    assert curves.baseline_latency_ms is not None and all(r.latency_ms is not None for r in curves.rows)
    pruned, report = graphopt.prune(
        model, X, speedup=2.5, round_to=4, sensitivity=curves, evaluate=lambda m: float(m.conv2.out_channels)
    )
    assert "speedup >= 2.5x on cpu, allocated by sensitivity" in report.budget
    assert report.steps, "the budget needs at least one move"
    previous = report.latency_before_ms
    for step in report.steps:
        assert step.latency_ms is not None and step.previous_ms is not None and step.unpruned_ms is not None
        assert step.latency_ms <= step.previous_ms == pytest.approx(previous)  # the model before it, same run
        assert step.unpruned_ms == pytest.approx(report.latency_before_ms)
        assert step.move is not None and step.move.startswith("group ")
        previous = step.latency_ms
    # the walk stops at the first step that meets the budget, judged against the unpruned model
    last = report.steps[-1]
    assert last.unpruned_ms / last.latency_ms >= 2.5
    assert all(s.unpruned_ms / s.latency_ms < 2.5 for s in report.steps[:-1])
    # the report's numbers are the result's: sizes, metric, widths multiples of round_to
    assert last.stats == pruned.stats() and last.metric == pruned.module.conv2.out_channels
    assert all(w % 4 == 0 for w in widths(pruned)) and widths(pruned) != (8, 24)
    assert report.latency_after_ms == pytest.approx(stand_in_ms(pruned))
    assert report.speedup == pytest.approx(report.latency_before_ms / report.latency_after_ms)
    assert "latency ms" in report.table() and last.move in report.table()


def test_a_move_measured_slower_than_the_model_before_it_is_passed_over(timed) -> None:
    # levels alone never hit the slow pair; only conv1 -> 8 on top of conv2 -> 24 does
    report = SensitivityReport("cnn", "fidelity error", 0.0, higher_is_better=False, baseline_latency_ms=2.0)
    report.rows = [
        SensitivityRow(1, "conv2", 0.25, 32, 24, 0.7, 0.7, 0.01, latency_ms=1.6),
        SensitivityRow(0, "conv1", 0.5, 16, 8, 0.6, 0.6, 0.02, latency_ms=1.5),
        SensitivityRow(1, "conv2", 0.75, 32, 8, 0.3, 0.3, 0.5, latency_ms=0.8),
    ]
    assert latency_moves(report) == [(1, 0.25), (0, 0.5), (1, 0.75)]
    pruned, result = graphopt.prune(DigitsCNN().eval(), X, latency_ms=1.0, round_to=4, sensitivity=report)
    assert [s.move for s in result.steps] == ["group 1 (conv2) -> 0.25", "group 1 (conv2) -> 0.75"]
    assert any(n.startswith("passed over group 0 -> 0.5: ") for n in result.notes)
    assert (8, 24) in timed and widths(pruned) == (16, 8)  # the slow pair was timed, never accepted
    for step in result.steps:
        assert step.latency_ms is not None and step.previous_ms is not None
        assert step.latency_ms <= step.previous_ms
    assert result.steps[-1].latency_ms <= 1.0 < result.steps[0].latency_ms  # type: ignore[operator]


def test_latency_moves_skip_slower_levels_and_repeated_widths() -> None:
    report = SensitivityReport("m", "error", 0.0, higher_is_better=False, baseline_latency_ms=1.0)
    report.rows = [
        SensitivityRow(0, "a", 0.25, 16, 12, 0.9, 0.9, 0.1, latency_ms=1.2),  # slower than unpruned
        SensitivityRow(0, "a", 0.3, 16, 12, 0.9, 0.9, 0.1, latency_ms=0.5),  # same width as 0.25: dropped
        SensitivityRow(0, "a", 0.5, 16, 8, 0.8, 0.8, 0.2, latency_ms=0.8),
    ]
    assert latency_moves(report) == [(0, 0.5)]  # 0.25 skipped; 0.3 is 0.25's graph, its 0.5 ms not trusted
    report.rows[2].latency_ms = 1.1
    assert latency_moves(report) == []
    report.rows[0].latency_ms = None
    with pytest.raises(InputError, match="needs sensitivity curves with measured latency"):
        latency_moves(report)


def test_latency_budget_errors_are_one_line(timed) -> None:
    model = DigitsCNN().eval()
    curves = graphopt.sensitivity(model, X, levels=LEVELS, round_to=4, measure=True)
    with pytest.raises(InputError) as error:
        graphopt.prune(model, X, speedup=50.0, round_to=4, sensitivity=curves)
    message = str(error.value)
    assert message.startswith("the speedup >= 50.0x on cpu budget cannot be met from these sensitivity curves:")
    assert "the best reached is" in message and "x the unpruned" in message and "\n" not in message
    with pytest.raises(InputError, match=r"measured at another round_to .* measure them with round_to=8"):
        graphopt.prune(model, X, speedup=2.0, round_to=8, sensitivity=curves)
    unmeasured = graphopt.sensitivity(model, X, levels=LEVELS, round_to=4)
    with pytest.raises(InputError, match="needs sensitivity curves with measured latency"):
        graphopt.prune(model, X, speedup=2.0, round_to=4, sensitivity=unmeasured)
    with pytest.raises(InputError, match="latency_ms must be a positive number of milliseconds"):
        graphopt.prune(model, X, latency_ms=0.0)


def test_a_latency_ms_budget_without_curves_bisects_one_ratio(timed) -> None:
    model = DigitsCNN().eval()
    pruned, report = graphopt.prune(model, X, latency_ms=1.0, round_to=1)
    assert report.budget == "latency <= 1.0 ms on cpu"
    assert report.steps[0].latency_ms is not None and report.steps[0].latency_ms <= 1.0
    assert stand_in_ms(pruned) <= 1.0


def test_cli_prune_allocates_under_a_latency_budget_and_writes_nothing_when_unmet(timed, capsys, tmp_path) -> None:
    from graphopt.cli import main

    cnn = f"{Path(__file__).resolve().parents[2]}/samples/cnn.py:DigitsCNN"
    common = [cnn, "--input-shape", "1x1x28x28", "--allocate", "sensitivity", "--levels", "0.25,0.5,0.75"]
    out = tmp_path / "pruned.pt2"
    assert main(["prune", *common, "--round-to", "4", "--speedup", "50", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be met from these sensitivity curves: the best reached is" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert main(["prune", *common, "--round-to", "4", "--latency-ms", "1.0", "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["budget"] == "latency <= 1.0 ms on cpu, allocated by sensitivity (fidelity error)"
    assert data["steps"][-1]["latency_ms"] <= 1.0 and out.exists()
    assert all(s["latency_ms"] <= s["previous_ms"] for s in data["steps"])


def test_levels_that_round_to_one_width_are_compiled_once(timed) -> None:
    # round_to 8: conv1 (16 channels) keeps 8 at both 0.5 and 0.75; the second row copies the first
    curves = graphopt.sensitivity(DigitsCNN().eval(), X, levels=(0.5, 0.75), round_to=8, measure=True)
    first, second = (r for r in curves.rows if r.group == 0)
    assert (first.level, second.level, first.kept, second.kept) == (0.5, 0.75, 8, 8)
    assert (first.metric, first.latency_ms, first.flops) == (second.metric, second.latency_ms, second.flops)
    assert timed == [(16, 32), (8, 32), (16, 16), (16, 8)]  # unpruned, conv1 at 8 once, conv2 at 16 and 8


def test_a_budget_met_by_one_lucky_timing_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    lucky = {"left": 2}  # conv2 at 24 reads 0.5 ms twice (a lucky run and its confirmation), then 1.7

    def fake(graphs: list[graphopt.Graph], target: str, **_: object) -> list[float]:
        out = []
        for graph in graphs:
            if widths(graph) == (16, 24) and lucky["left"] > 0:
                lucky["left"] -= 1
                out.append(0.5)
            else:
                out.append(stand_in_ms(graph))
        return out

    monkeypatch.setattr("graphopt.pruning.structured.measure_latencies", fake)
    report = SensitivityReport("cnn", "fidelity error", 0.0, higher_is_better=False, baseline_latency_ms=2.0)
    report.rows = [
        SensitivityRow(1, "conv2", 0.25, 32, 24, 0.7, 0.7, 0.01, latency_ms=1.6),
        SensitivityRow(1, "conv2", 0.75, 32, 8, 0.3, 0.3, 0.5, latency_ms=0.8),
    ]
    pruned, result = graphopt.prune(DigitsCNN().eval(), X, latency_ms=1.0, round_to=4, sensitivity=report)
    assert any(n.startswith("step 1 met the budget once, not when re-timed (1.") for n in result.notes)
    assert widths(pruned) == (16, 8) and len(result.steps) == 2


def test_a_parallel_sweep_fills_in_the_copied_rows_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    class Sweep:  # stands in for the worker pool: latencies come back in submission order
        def __init__(self, *_: object, **__: object) -> None:
            self.graphs: list[graphopt.Graph] = []

        def submit(self, graph: graphopt.Graph) -> None:
            self.graphs.append(graph)

        def latencies(self) -> list[float]:
            return [stand_in_ms(g) for g in self.graphs]

        def close(self) -> None:
            pass

    monkeypatch.setattr(sys.modules["graphopt.pruning.sensitivity"], "CandidateSweep", Sweep)
    curves = graphopt.sensitivity(DigitsCNN().eval(), X, levels=(0.5, 0.75), round_to=8, measure=True, jobs=2)
    first, second = (r for r in curves.rows if r.group == 0)
    assert first.latency_ms is not None and second.latency_ms == first.latency_ms
    assert [r.latency_ms for r in curves.rows if r.group == 1] == sorted(
        (r.latency_ms for r in curves.rows if r.group == 1), reverse=True
    )
