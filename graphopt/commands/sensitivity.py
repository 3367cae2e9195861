"""``graphopt sensitivity MODEL --input-shape 1x1x28x28 [--eval file.py:accuracy] [--levels 0.25,0.5,0.75]``

Prune each dependency group alone at each level and record the damage (``graphopt.sensitivity``):
FLOPs and parameters left, and the metric: ``--eval`` names a function taking the pruned
``torch.fx.GraphModule`` and returning a number (higher is better unless ``--lower-is-better``);
without it, the fidelity error to the unpruned outputs on the example inputs. ``--csv`` writes one
row per (group, level), Distiller style. ``--measure --jobs N`` compiles the candidates in N
worker processes (timed here, one at a time); ``--rpc ADDR`` times them on a TVM RPC device.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphopt.commands import _common
from graphopt.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sensitivity",
        help="prune each channel group alone at several levels; table, CSV or JSON of the metric",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    add_evaluation_arguments(parser)
    parser.add_argument(
        "--importance", default="l1", help="how channels are ranked: l1 (default), l2, bn_scale, random"
    )
    parser.add_argument("--round-to", type=int, default=1, metavar="N", help="kept channel counts are multiples of N")
    parser.add_argument("--measure", action="store_true", help="compile every candidate and time it (slow)")
    parser.add_argument("--target", default="cpu", help="the target --measure compiles for (default cpu)")
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="--measure: compile the candidates in N worker processes"
    )
    parser.add_argument(
        "--rpc",
        metavar="HOST:PORT|KEY@TRACKER:PORT",
        help="--measure: time the candidates on this TVM RPC server (or a tracker's devices under KEY)",
    )
    parser.add_argument("--csv", metavar="FILE.csv", help="write the rows as CSV")
    parser.add_argument("--plot", metavar="FILE.png|svg", help="draw one curve per group")
    parser.add_argument("--cache-dir", metavar="DIR", help="reuse the result of an identical earlier run stored here")
    _common.add_json_argument(parser)


def add_evaluation_arguments(parser: argparse.ArgumentParser) -> None:
    """--eval, --lower-is-better, --levels (shared with ``prune --allocate sensitivity``)."""
    parser.add_argument("--eval", metavar="FILE.py:FUNCTION", help="metric function(module) -> float")
    parser.add_argument("--lower-is-better", action="store_true", help="the --eval metric improves downwards")
    parser.add_argument(
        "--levels",
        default="0.25,0.5,0.75",
        help="fractions of each group to remove, comma-separated (default 0.25,0.5,0.75)",
    )


def parse_levels(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise InputError(f"bad --levels '{text}': write fractions like 0.25,0.5,0.75") from error


def run_sensitivity(
    args: argparse.Namespace,
    graph: Any,
    *,
    round_to: int,
    measure: bool,
    cache_dir: str | None = None,
    jobs: int = 1,
    rpc: str | None = None,
) -> Any:
    from graphopt.model_loading import load_callable
    from graphopt.pruning import sensitivity

    evaluate = load_callable(args.eval, "evaluation function") if args.eval else None
    return sensitivity(
        graph,
        levels=parse_levels(args.levels),
        importance=args.importance,
        round_to=round_to,
        evaluate=evaluate,
        metric_name=args.eval.rpartition(":")[2] if args.eval else None,
        higher_is_better=not args.lower_is_better,
        measure=measure,
        target=args.target,
        jobs=jobs,
        rpc=rpc,
        cache_dir=cache_dir,
    )


def run(args: argparse.Namespace) -> int:
    if args.csv and not args.csv.endswith(".csv"):
        raise InputError(f"--csv {args.csv}: name the file *.csv")
    if (args.jobs != 1 or args.rpc) and not args.measure:
        raise InputError("--jobs and --rpc apply to --measure (the latency of every candidate); add --measure")
    graph = _common.load_and_capture(args).graph
    with _common.status("sensitivity analysis", quiet=args.json):
        report = run_sensitivity(
            args,
            graph,
            round_to=args.round_to,
            measure=args.measure,
            cache_dir=args.cache_dir,
            jobs=args.jobs,
            rpc=args.rpc,
        )
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.to_csv())
    if args.plot:
        report.plot(args.plot)
    if args.json:
        _common.print_json(report.to_dict())
    else:
        _common.stdout.print(report.table(), markup=False)
        for written in (args.csv, args.plot):
            if written:
                _common.stdout.print(f"wrote {written}")
    return 0
