"""``graphopt viz MODEL --input-shape 1x3x32x32 [--passes O2] [-o graph.html|.dot|.svg]``: draw the graph.

The HTML page is one self-contained file (opens from file://, no network): pan and zoom, search,
node details, modules collapsed into boxes. With ``--passes`` it also shows the graph before and
after every pass, with each pass's report and the nodes it removed, added, folded or fused.
``.dot`` and ``.svg`` (Graphviz) export the final graph for papers and docs.
``--prune-groups`` lists the pruning dependency groups (pick one to highlight it across the graph);
``--sensitivity FILE.json`` (``graphopt sensitivity ... --json > FILE.json``) also colours nodes by
how much pruning their group costs.
``--profile`` compiles the graph after the passes for ``--target``, times every kernel of it
(``CompiledModel.profile``) and colours nodes by their kernels' measured share of the run; the
page lists every kernel (ms, share, GFLOP/s, the nodes it computes), sortable by time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from graphopt.commands import _common
from graphopt.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "viz",
        help="write an interactive HTML view of the graph (or DOT/SVG), optionally before/after each pass",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    _common.add_pipeline_arguments(parser, default_passes="O0")
    parser.add_argument(
        "-o",
        "--out",
        default="graph.html",
        metavar="FILE",
        help="output file: .html, .dot or .svg (default graph.html)",
    )
    parser.add_argument("--format", choices=("html", "dot", "svg"), help="output format (default: from the suffix)")
    parser.add_argument(
        "--prune-groups", action="store_true", help="HTML: list the pruning dependency groups, each can be highlighted"
    )
    parser.add_argument(
        "--sensitivity",
        metavar="FILE.json",
        help="HTML: colour nodes by pruning sensitivity (the JSON of `graphopt sensitivity --json`); implies --prune-groups",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="HTML: compile the final graph, time every kernel and colour nodes by measured time",
    )
    parser.add_argument("--target", default="cpu", help="with --profile: the target to compile for (default cpu)")
    parser.add_argument(
        "--runs", type=int, default=10, metavar="N", help="with --profile: instrumented runs averaged (default 10)"
    )
    _common.add_check_arguments(parser, keep=False)


def run(args: argparse.Namespace) -> int:
    from graphopt.visualize import output_format, pipeline_payload, profile_overlay, pruning_overlay, write

    chosen = output_format(args.out, args.format)  # a bad file name fails before any slow work
    report = _sensitivity_report(args.sensitivity) if args.sensitivity else None
    if (args.prune_groups or report is not None or args.profile) and chosen != "html":
        raise InputError("--prune-groups, --sensitivity and --profile need an .html output")
    if args.runs < 1:
        raise InputError("--runs must be at least 1")
    if args.profile:
        _common.check_build_request(args.target, None)
    options = _common.pass_options(args.pass_option)
    total = _common.resolve_passes(args.passes, options)
    loaded = _common.load_and_capture(args)
    graph = loaded.graph
    groups = pruning_overlay(graph, report) if args.prune_groups or report is not None else None
    last = _LastGraph(graph)
    with _common.status("optimizing"):
        payload = pipeline_payload(
            graph,
            args.passes if total else None,
            verify=args.verify,
            options=options,
            dump_dir=args.dump_ir,
            instruments=[_common.PassProgress(total), last],
        )
    if groups is not None:
        payload["pruning"] = groups
    if args.profile:
        payload["profile"] = profile_overlay(payload, _profile(args, loaded, last.graph), target=args.target)
    path = write(payload, args.out, args.format)
    final = payload["states"][-1]["graph"]
    passes = len(payload["passes"])
    ran = f", {passes} pass{'es' if passes != 1 else ''} shown before/after" if passes else ""
    pruning = f", {len(groups['groups'])} pruning groups" if groups is not None else ""
    timed = ""
    if args.profile:
        kernels = payload["profile"]["kernels"]
        timed = f", {len(kernels)} kernels timed ({payload['profile']['kernel_ms']:.3f} ms per run)"
    _common.stdout.print(f"wrote {path} ({final['stats']['nodes']} ops{ran}{pruning}{timed})")
    return 0


class _LastGraph:
    """A pass instrument keeping the graph after the last pass (the one ``--profile`` compiles)."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph

    def after_pass(self, info: Any, graph: Any, record: Any) -> None:
        self.graph = graph


def _profile(args: argparse.Namespace, loaded: Any, graph: Any) -> Any:
    """Compile ``graph`` (already optimized: no passes again) for ``--target`` and time every kernel."""
    from graphopt.api import compile as compile_model

    with _common.status(f"compiling for {args.target}"):
        compiled = compile_model(
            graph, loaded.inputs, target=args.target, passes="O0", **_common.check_options(args, loaded)
        )
    if not hasattr(compiled, "profile"):
        raise InputError("--profile is not available for a model with PyTorch fallback segments")
    arrays = [t.numpy() for t in loaded.inputs]
    with _common.status("timing every kernel"):
        return compiled.profile(*arrays, runs=args.runs)


def _sensitivity_report(path: str) -> Any:
    """The ``SensitivityReport`` saved as JSON at ``path`` (one-line error if it is not one)."""
    from graphopt.pruning import SensitivityReport

    try:
        return SensitivityReport.from_dict(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise InputError(f"--sensitivity {path}: no such file") from None
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(
            f"--sensitivity {path}: not the JSON of `graphopt sensitivity --json` ({type(error).__name__}: {error})"
        ) from None
