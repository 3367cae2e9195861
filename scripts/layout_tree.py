"""Run a checker on graphopt as it is installed: graphopt.passes and graphopt.targets inside graphopt.

pyproject maps ``graphopt.passes`` to passes/ and ``graphopt.targets`` to targets/ (package-dir), a
layout mypy and import-linter cannot see from the source tree: mypy would name passes/x.py
``passes.x``, and import-linter only walks graphopt/. This builds ``build/layout/``: ``graphopt/``, a
tree of real directories and symlinks to the source files shaped like the installed package, plus a
link to pyproject.toml (the tools' configuration); runs the tool there with this venv's Python; and
maps the paths it prints back to the source files.

    python scripts/layout_tree.py mypy -p graphopt
    python scripts/layout_tree.py lint-imports
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "layout"
# Installed package -> source directory (pyproject's [tool.setuptools] package-dir).
PACKAGE_DIRS = {"graphopt": "graphopt", "graphopt/passes": "passes", "graphopt/targets": "targets"}
# Tools without a ``python -m`` entry point.
TOOLS = {"lint-imports": ["-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]}


def build_tree() -> Path:
    """(Re)build the package tree from scratch, so moved or deleted files do not linger."""
    shutil.rmtree(TREE / "graphopt", ignore_errors=True)
    for package, source in PACKAGE_DIRS.items():
        for path in sorted((ROOT / source).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            link = TREE / package / path.relative_to(ROOT / source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    config = TREE / "pyproject.toml"
    if not config.is_symlink():
        config.symlink_to(ROOT / "pyproject.toml")
    return TREE


def source_paths(text: str) -> str:
    """Rewrite tree paths in a tool's output to the source files they link to."""
    text = text.replace(f"{TREE}/", "")
    for package, source in sorted(PACKAGE_DIRS.items(), key=lambda item: -len(item[0])):
        text = re.sub(rf"(?<![\w/.]){re.escape(package)}/", f"{source}/", text)
    return text


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    tree = build_tree()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    # -P: the tree, not the source checkout, is where ``import graphopt`` must resolve.
    command = [sys.executable, "-P", *TOOLS.get(argv[0], ["-m", argv[0]]), *argv[1:]]
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
    sys.stdout.write(source_paths(result.stdout))
    sys.stderr.write(source_paths(result.stderr))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
