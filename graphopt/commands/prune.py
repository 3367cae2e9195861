"""``graphopt prune MODEL --input-shape 1x3x224x224 (--flops F | --params P | --ratio R | --speedup S | --latency-ms X) -o out.pt2``

Structured pruning (``graphopt.prune``): channels are removed physically, whole dependency groups
at a time, until the budget holds: ``--flops 0.5`` keeps at most half the FLOPs, ``--params 0.3``
at most 30% of the parameters, ``--ratio 0.5`` removes half of every group's channels,
``--speedup 2`` / ``--latency-ms X`` bisect one ratio on the latency of the compiled candidates
(``--target``); with ``--allocate sensitivity`` they take per-group levels from curves measured on
the target instead, each move timed against the model before it. The pruned
graph is saved as a torch.export program that ``graphopt compile`` takes as MODEL; the file appears
only when pruning succeeded. ``--groups`` lists the dependency groups and stops.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphopt.commands import _common, sensitivity
from graphopt.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="remove channels (structured pruning) to a FLOPs/params budget; save a smaller graph",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--flops", type=float, metavar="F", help="keep at most this fraction of the FLOPs (0..1)")
    budget.add_argument("--params", type=float, metavar="P", help="keep at most this fraction of the parameters")
    budget.add_argument("--ratio", type=float, metavar="R", help="remove this fraction of every group's channels")
    budget.add_argument(
        "--speedup", type=float, metavar="S", help="the compiled model on --target at least S times faster (measured)"
    )
    budget.add_argument(
        "--latency-ms", type=float, metavar="X", help="the compiled model on --target at most X ms per run (measured)"
    )
    parser.add_argument(
        "--importance", default="l1", help="how channels are ranked: l1 (default), l2, bn_scale, random"
    )
    parser.add_argument("--round-to", type=int, default=8, metavar="N", help="kept channel counts are multiples of N")
    parser.add_argument(
        "--ignore", action="append", default=[], metavar="LAYER", help="keep this layer's output channels (repeatable)"
    )
    parser.add_argument("--steps", type=int, default=1, help="reach the budget in this many steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of --importance random")
    parser.add_argument("--measure", action="store_true", help="compile before and after and time both")
    parser.add_argument("--target", default="cpu", help="the target --measure compiles for (default cpu)")
    parser.add_argument(
        "--allocate",
        choices=["uniform", "sensitivity"],
        default="uniform",
        help="uniform: one ratio for every group (default); sensitivity: per-group levels from a sensitivity "
        "analysis (with --eval, --levels), least metric loss per FLOP saved first (per measured ms saved "
        "under --speedup/--latency-ms, the curves then timed on --target)",
    )
    sensitivity.add_evaluation_arguments(parser)
    parser.add_argument("--groups", action="store_true", help="list the dependency groups and stop")
    parser.add_argument("-o", "--out", metavar="FILE.pt2", help="save the pruned graph as a torch.export program")
    _common.add_json_argument(parser)


def run(args: argparse.Namespace) -> int:
    from graphopt.pruning import groups, prune

    if args.out and not args.out.endswith(".pt2"):
        raise InputError(f"--out {args.out}: the pruned graph is saved as a torch.export program; name it *.pt2")
    budgets = ("flops", "params", "ratio", "speedup", "latency_ms")
    if not args.groups and all(getattr(args, name) is None for name in budgets):
        raise InputError(
            "give a budget: --flops F, --params P, --ratio R, --speedup S or --latency-ms X (e.g. --flops 0.5)"
        )
    from graphopt.model_loading import load_callable

    evaluate = load_callable(args.eval, "evaluation function") if args.eval else None
    graph = _common.load_and_capture(args).graph
    if args.groups:
        found = groups(graph, ignore=args.ignore)
        if args.json:
            _common.print_json([g.to_dict() for g in found])
        else:
            for group in found:
                _common.stdout.print(group.describe(), markup=False)
        return 0
    with _common.status("pruning", quiet=args.json):
        curves = None
        if args.allocate == "sensitivity":
            latency = args.speedup is not None or args.latency_ms is not None
            curves = sensitivity.run_sensitivity(args, graph, round_to=args.round_to, measure=latency)
        pruned, report = prune(
            graph,
            flops=args.flops,
            params=args.params,
            ratio=args.ratio,
            speedup=args.speedup,
            latency_ms=args.latency_ms,
            importance=args.importance,
            round_to=args.round_to,
            ignore=args.ignore,
            steps=args.steps,
            seed=args.seed,
            measure=args.measure,
            target=args.target,
            sensitivity=curves,
            evaluate=evaluate,
        )
        if args.out:
            from graphopt.commands.optimize import save_program

            save_program(pruned, Path(args.out))
    if args.json:
        data = report.to_dict()
        data["out"] = args.out
        _common.print_json(data)
    else:
        _common.stdout.print(report.table(), markup=False)
        _common.stdout.print(f"saved the pruned graph to {args.out}" if args.out else "no --out given: not saved")
    return 0
