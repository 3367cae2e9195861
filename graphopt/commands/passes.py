"""``graphopt passes [--json]``: the registered passes (built-in and plugins), what they do, their options."""

from __future__ import annotations

import argparse
from typing import Any

from graphopt.commands import _common


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("passes", help="list the registered passes and presets", description=__doc__)
    _common.add_json_argument(parser)


def describe() -> dict[str, Any]:
    """Passes and presets as plain data (what ``--json`` prints)."""
    from graphopt import presets
    from graphopt.pass_api import list_passes
    from graphopt.report import _jsonable

    return {
        "passes": [
            {
                "name": info.name,
                "description": info.description,
                "options": _jsonable(info.options),
                "requires": list(info.requires),
                "reports": list(info.reports),
                "tolerance": info.tolerance,
                "origin": info.origin,
            }
            for info in list_passes()
        ],
        "presets": {name: list(passes) for name, passes in presets.PRESETS.items()},
    }


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    data = describe()
    if args.json:
        _common.print_json(data)
        return 0
    table = Table(title="graphopt passes")
    table.add_column("pass", no_wrap=True)
    for column in ("description", "options", "requires", "from"):
        table.add_column(column)
    for entry in data["passes"]:
        options = ", ".join(f"{k}={v!r}" for k, v in entry["options"].items())
        table.add_row(entry["name"], entry["description"], options, ", ".join(entry["requires"]), entry["origin"])
    _common.stdout.print(table)
    for name, passes in data["presets"].items():
        _common.stdout.print(f"{name}: {', '.join(passes) or '(no passes)'}")
    return 0
