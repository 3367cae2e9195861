"""Sensitivity analysis, allocation from its curves, and the ``graphopt prune`` / ``sensitivity`` commands."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from pathlib import Path

import pytest
import torch

import graphopt
from graphopt.cli import main
from graphopt.errors import InputError
from graphopt.pruning.sensitivity import SensitivityReport, SensitivityRow, allocation_moves
from samples.cnn import DigitsCNN

ROOT = Path(__file__).resolve().parents[2]
CNN = f"{ROOT}/samples/cnn.py:DigitsCNN"
X = torch.randn(2, 1, 28, 28)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_sensitivity_prunes_each_group_alone_and_writes_csv_rows() -> None:
    report = graphopt.sensitivity(DigitsCNN().eval(), X, levels=(0.25, 0.5))
    assert [(r.group, r.level, r.kept) for r in report.rows] == [
        (0, 0.25, 12),
        (0, 0.5, 8),
        (1, 0.25, 24),
        (1, 0.5, 16),
    ]
    assert report.metric == "fidelity error" and report.baseline == 0.0 and not report.higher_is_better
    assert all(r.metric > 0 for r in report.rows)
    assert report.curve(0) == [(0.0, 0.0), (0.25, report.rows[0].metric), (0.5, report.rows[1].metric)]
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(rows) == 4 and float(rows[3]["flops"]) == pytest.approx(report.rows[3].flops)
    assert json.loads(report.to_json())["rows"][0]["layer"] == "conv1"


def test_allocation_follows_the_curves_and_meets_the_budget() -> None:
    model = DigitsCNN().eval()
    curves = graphopt.sensitivity(model, X, levels=(0.25, 0.5, 0.75))
    first = {r.group: r for r in curves.rows if r.level == 0.25}
    cheapest = min(first, key=lambda g: first[g].metric / (1 - first[g].flops))  # loss per FLOP saved
    assert allocation_moves(curves, "flops")[0] == (cheapest, 0.25)
    _, report = graphopt.prune(model, X, flops=0.5, round_to=1, sensitivity=curves)
    # just under the budget: the crossing move is bisected, not taken a whole level (0.43x before that)
    assert 0.45 * report.before.flops < report.after.flops <= 0.5 * report.before.flops
    assert "allocated by sensitivity" in report.budget
    with pytest.raises(
        InputError, match="allocation by sensitivity needs a flops=, params=, speedup= or latency_ms= budget"
    ):
        graphopt.prune(model, X, ratio=0.5, sensitivity=curves)
    with pytest.raises(InputError, match="sensitivity levels must lie strictly between 0 and 1"):
        graphopt.sensitivity(model, X, levels=(0.5, 1.0))


def test_cli_prune_saves_a_program_that_prune_reports_and_compile_reads(capsys, tmp_path) -> None:
    out = tmp_path / "pruned.pt2"
    status, stdout, _ = run(capsys, "prune", CNN, "--input-shape", "1x1x28x28", "--flops", "0.5", "-o", out, "--json")
    assert status == 0 and out.is_file()
    report = json.loads(stdout)
    assert report["after"]["flops"] <= 0.5 * report["before"]["flops"] and report["out"] == str(out)
    program = torch.export.load(str(out))
    x = torch.randn(1, 1, 28, 28)
    assert program.module()(x).shape == (1, 10)
    assert program.module().conv1.weight.shape[0] < 16  # the saved graph holds the smaller tensors


def test_cli_prune_lists_groups_and_refuses_bad_budgets_without_writing(capsys, tmp_path) -> None:
    status, stdout, _ = run(capsys, "prune", CNN, "--input-shape", "1x1x28x28", "--groups")
    assert status == 0 and stdout.splitlines()[0] == "group 0: 16 channels; out of conv1, bn1; into conv2"
    out = tmp_path / "pruned.pt2"
    for argv, message in [
        (["--flops", "1.5"], "flops must lie strictly between 0 and 1, got 1.5"),
        (["--flops", "0.001"], "the flops budget cannot be met"),
        ([], "give a budget: --flops F, --params P, --ratio R, --speedup S or --latency-ms X"),
        (["--ratio", "0.5", "--ignore", "nope"], "ignored layer 'nope' is not in the graph"),
    ]:
        status, _, err = run(capsys, "prune", CNN, "--input-shape", "1x1x28x28", *argv, "-o", out)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1
        assert not out.exists()


def test_cli_sensitivity_with_a_user_metric_writes_csv(capsys, tmp_path) -> None:
    metric = tmp_path / "metric.py"
    metric.write_text(
        textwrap.dedent(
            """
            import torch
            torch.manual_seed(0)
            X = torch.randn(4, 1, 28, 28)
            def mean_logit(module):
                with torch.no_grad():
                    return float(module(X).mean())
            def broken(module):
                raise ValueError("no labels")
            """
        )
    )
    table = tmp_path / "sens.csv"
    status, stdout, _ = run(
        capsys,
        "sensitivity",
        CNN,
        "--input-shape",
        "1x1x28x28",
        "--eval",
        f"{metric}:mean_logit",
        "--levels",
        "0.5",
        "--csv",
        table,
    )
    assert status == 0 and "mean_logit" in stdout
    assert [row["level"] for row in csv.DictReader(table.open())] == ["0.5", "0.5"]
    status, _, err = run(capsys, "sensitivity", CNN, "--input-shape", "1x1x28x28", "--eval", f"{metric}:broken")
    assert status == 2 and "the evaluation function raised ValueError: no labels" in err


@pytest.mark.slow
def test_cli_compile_takes_the_pruned_program(capsys, tmp_path) -> None:
    pruned = tmp_path / "pruned.pt2"
    assert run(capsys, "prune", CNN, "--input-shape", "1x1x28x28", "--ratio", "0.5", "-o", pruned)[0] == 0
    status, stdout, _ = run(capsys, "compile", pruned, "-o", tmp_path / "artifact")
    assert status == 0 and "matches PyTorch eager" in stdout


def test_a_cached_sensitivity_run_is_read_back_and_a_changed_model_is_not(tmp_path) -> None:
    calls: list[int] = []

    def metric(module: torch.fx.GraphModule) -> float:
        calls.append(1)
        with torch.no_grad():
            return float(module(X).mean())

    torch.manual_seed(0)
    model = DigitsCNN().eval()
    first = graphopt.sensitivity(model, X, levels=(0.5,), evaluate=metric, cache_dir=tmp_path)
    assert len(calls) == 3  # baseline and one level of each of the two groups
    again = graphopt.sensitivity(model, X, levels=(0.5,), evaluate=metric, cache_dir=tmp_path)
    assert len(calls) == 3 and again == first
    with torch.no_grad():
        model.conv1.weight[0] += 1
    graphopt.sensitivity(model, X, levels=(0.5,), evaluate=metric, cache_dir=tmp_path)
    assert len(calls) == 6 and len(list(tmp_path.glob("*.json"))) == 2


def test_the_sensitivity_plot_is_written_as_png_or_svg(tmp_path) -> None:
    report = graphopt.sensitivity(DigitsCNN().eval(), X, levels=(0.5,))
    svg = report.plot(tmp_path / "sens.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "0: conv1" in svg and "1: conv2" in svg
    assert report.plot(tmp_path / "sens.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match=r"name it \*\.png or \*\.svg"):
        report.plot(tmp_path / "sens.pdf")


def test_flat_curves_are_walked_evenly_not_one_group_to_its_last_level() -> None:
    report = SensitivityReport("two groups", "top-1", 1.0)
    for group in (0, 1):
        for level in (0.25, 0.5, 0.75):  # the metric never moves: the curves cannot tell the groups apart
            report.rows.append(SensitivityRow(group, f"conv{group}", level, 8, 8, 1 - level / 2, 1 - level / 2, 1.0))
    assert allocation_moves(report, "flops") == [(0, 0.25), (1, 0.25), (0, 0.5), (1, 0.5), (0, 0.75), (1, 0.75)]
    report.rows[3].metric = 0.9  # group 1 at 0.25 costs accuracy: group 0 goes first, to its end
    assert allocation_moves(report, "flops")[:3] == [(0, 0.25), (0, 0.5), (0, 0.75)]


def test_a_metric_that_never_moves_is_noted_in_the_prune_report() -> None:
    model = DigitsCNN().eval()
    curves = graphopt.sensitivity(model, X, levels=(0.25, 0.5, 0.75), evaluate=lambda module: 1.0)
    _, report = graphopt.prune(model, X, flops=0.5, round_to=1, sensitivity=curves)
    assert any(note.startswith("6 of 6 sensitivity rows show no loss of metric") for note in report.notes)
    graded = graphopt.sensitivity(model, X, levels=(0.25, 0.5, 0.75))
    _, report = graphopt.prune(model, X, flops=0.5, round_to=1, sensitivity=graded)
    assert not any("show no loss" in note for note in report.notes)
