"""One module per ``graphopt`` subcommand, found by ``graphopt.cli`` at start-up.

A command module defines ``add_parser(subparsers)`` (adding its parser, with ``help=``) and
``run(args) -> int`` (the exit status). Dropping ``commands/<name>.py`` in is all it takes; modules
whose names start with ``_`` are helpers. Shared options and the model/input loading that every
model-taking command needs live in ``commands._common``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

#: Subcommands in the order ``graphopt --help`` lists them; others follow alphabetically.
ORDER = ("compile", "optimize", "export", "passes", "bench", "quantize", "viz")


def command_names() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")
