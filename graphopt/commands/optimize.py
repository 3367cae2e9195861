"""``graphopt optimize MODEL --input-shape 1x784 [--passes O2] [--verify] [--json]``: run passes, print the report.

With ``-o FILE.pt2`` the optimized graph is saved as a torch.export program, which every
model-taking command accepts back as MODEL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from graphopt.commands import _common
from graphopt.errors import GraphoptError, InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "optimize",
        help="capture a model, run a pass pipeline and print what each pass changed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common.add_model_arguments(parser)
    _common.add_pipeline_arguments(parser)
    _common.add_json_argument(parser)
    parser.add_argument("-o", "--out", metavar="FILE.pt2", help="save the optimized graph as a torch.export program")


def run(args: argparse.Namespace) -> int:
    from graphopt.pass_manager import optimize

    if args.out and not args.out.endswith(".pt2"):
        raise InputError(f"--out {args.out}: the optimized graph is saved as a torch.export program; name it *.pt2")
    options = _common.pass_options(args.pass_option)
    total = _common.resolve_passes(args.passes, options)
    graph = _common.load_and_capture(args).graph
    with _common.status("optimizing", quiet=args.json):
        optimized, report = optimize(
            graph,
            args.passes,
            verify=args.verify,
            options=options,
            dump_dir=args.dump_ir,
            instruments=[_common.PassProgress(total)],
        )
        if args.out:
            save_program(optimized, Path(args.out))
    if args.json:
        _common.print_json(report.to_dict())
    else:
        _common.stdout.print(report.table())
        for note in report.notes:
            _common.stdout.print(f"note: {note}")
        if args.out:
            _common.stdout.print(f"saved the optimized graph to {args.out}")
    return 0


def save_program(graph: Any, path: Path) -> None:
    """torch.export the graph and save it to ``path`` atomically (a temp file renamed into place)."""
    import torch

    try:
        program = torch.export.export(graph.module, graph.example_inputs, strict=False)
    except Exception as error:
        raise GraphoptError(f"cannot export the optimized graph to save it: {error}".splitlines()[0]) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    # Saved under its final name in a temporary folder beside it: torch.export.save names the
    # archive's root folder after the file, and the file gets the umask's mode, not mkstemp's 0600.
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.stem}.tmp-"))
    try:
        torch.export.save(program, staging / path.name)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
