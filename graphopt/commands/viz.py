"""``graphopt viz MODEL --input-shape 1x3x32x32 [--passes O2] [-o graph.html|.dot|.svg]``: draw the graph.

The HTML page is one self-contained file (opens from file://, no network): pan and zoom, search,
node details, modules collapsed into boxes. With ``--passes`` it also shows the graph before and
after every pass, with each pass's report and the nodes it removed, added, folded or fused.
``.dot`` and ``.svg`` (Graphviz) export the final graph for papers and docs.
"""

from __future__ import annotations

import argparse
from typing import Any

from graphopt.commands import _common


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


def run(args: argparse.Namespace) -> int:
    from graphopt.visualize import output_format, pipeline_payload, write

    output_format(args.out, args.format)  # a bad file name fails before any slow work
    options = _common.pass_options(args.pass_option)
    total = _common.resolve_passes(args.passes, options)
    graph = _common.load_and_capture(args).graph
    with _common.status("optimizing"):
        payload = pipeline_payload(
            graph,
            args.passes if total else None,
            verify=args.verify,
            options=options,
            dump_dir=args.dump_ir,
            instruments=[_common.PassProgress(total)],
        )
    path = write(payload, args.out, args.format)
    final = payload["states"][-1]["graph"]
    passes = len(payload["passes"])
    ran = f", {passes} pass{'es' if passes != 1 else ''} shown before/after" if passes else ""
    _common.stdout.print(f"wrote {path} ({final['stats']['nodes']} ops{ran})")
    return 0
