"""``graphopt viz MODEL --input-shape 1x3x32x32 [--passes O2] [-o graph.html|.dot|.svg]``: draw the graph.

The HTML page is one self-contained file (opens from file://, no network): pan and zoom, search,
node details, modules collapsed into boxes. With ``--passes`` it also shows the graph before and
after every pass, with each pass's report and the nodes it removed, added, folded or fused.
``.dot`` and ``.svg`` (Graphviz) export the final graph for papers and docs.
``--prune-groups`` lists the pruning dependency groups (pick one to highlight it across the graph);
``--sensitivity FILE.json`` (``graphopt sensitivity ... --json > FILE.json``) also colours nodes by
how much pruning their group costs.
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


def run(args: argparse.Namespace) -> int:
    from graphopt.visualize import output_format, pipeline_payload, pruning_overlay, write

    chosen = output_format(args.out, args.format)  # a bad file name fails before any slow work
    report = _sensitivity_report(args.sensitivity) if args.sensitivity else None
    if (args.prune_groups or report is not None) and chosen != "html":
        raise InputError("--prune-groups and --sensitivity need an .html output")
    options = _common.pass_options(args.pass_option)
    total = _common.resolve_passes(args.passes, options)
    graph = _common.load_and_capture(args).graph
    groups = pruning_overlay(graph, report) if args.prune_groups or report is not None else None
    with _common.status("optimizing"):
        payload = pipeline_payload(
            graph,
            args.passes if total else None,
            verify=args.verify,
            options=options,
            dump_dir=args.dump_ir,
            instruments=[_common.PassProgress(total)],
        )
    if groups is not None:
        payload["pruning"] = groups
    path = write(payload, args.out, args.format)
    final = payload["states"][-1]["graph"]
    passes = len(payload["passes"])
    ran = f", {passes} pass{'es' if passes != 1 else ''} shown before/after" if passes else ""
    pruning = f", {len(groups['groups'])} pruning groups" if groups is not None else ""
    _common.stdout.print(f"wrote {path} ({final['stats']['nodes']} ops{ran}{pruning})")
    return 0


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
