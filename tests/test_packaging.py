"""What users install: the wheel built from the tree, in a fresh venv, run from outside the repo.

The editable install that the tests otherwise use finds every module in the source tree, so a
sub-package or data file missing from pyproject's ``packages`` / ``package-data`` goes unnoticed
there; these tests look at the wheel itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Where each installed package's sources live in the tree (pyproject's package-dir).
PACKAGE_DIRS = {"graphopt": ROOT / "graphopt", "graphopt.passes": ROOT / "passes", "graphopt.targets": ROOT / "targets"}


def _tree_packages() -> dict[str, Path]:
    """Every folder with an ``__init__.py`` under the three package roots, by its installed name."""
    found = {}
    for name, folder in PACKAGE_DIRS.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            if "__pycache__" not in parts:
                found[".".join((name, *parts))] = init.parent
    return found


def test_pyproject_lists_every_package_of_the_tree():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert set(_tree_packages()) - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - set(_tree_packages()) == set()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the tree (setuptools writes build/ beside the sources)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("graphopt", "passes", "targets"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run([*command, "-w", str(out), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("graphopt-*.whl")
    return built


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_data_file_of_the_packages(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"graphopt/py.typed"}
    for package, folder in _tree_packages().items():
        prefix = package.replace(".", "/")
        for path in folder.iterdir():
            if path.is_file() and path.suffix not in {".pyc"}:
                expected.add(f"{prefix}/{path.name}")
    for data in (ROOT / "targets" / "arm" / "runner").iterdir():
        expected.add(f"graphopt/targets/arm/runner/{data.name}")
    for data in (ROOT / "graphopt" / "viz_assets").iterdir():
        expected.add(f"graphopt/viz_assets/{data.name}")
    assert expected - names == set()


def _fresh_venv(folder: Path) -> Path:
    """A venv without pip whose site-packages sees this environment's dependencies (torch, tvm, ...).

    Only the folders are added (a ``.pth`` line), so the ``.pth`` files in them, among them the
    editable install's finder that maps ``graphopt`` to this tree, are not run there.
    """
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], *(p for p in sys.path if p.endswith("site-packages"))}
    (site / "zz_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours) if Path(p).is_dir()))
    return python


@pytest.mark.slow
def test_the_installed_wheel_runs_the_cli_outside_the_repo(wheel, tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index"]
    result = subprocess.run([*install, str(wheel)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    where = run(str(python), "-c", "import graphopt, graphopt.targets.arm as a; print(graphopt.__file__, a.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where.stdout.split()), where.stdout

    cli = str(tmp_path / "venv" / "bin" / "graphopt")
    helped = run(cli, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "compile" in helped.stdout
    listed = run(cli, "passes")
    assert listed.returncode == 0, listed.stderr
    assert "fold_constants" in listed.stdout
    compiled = run(cli, "compile", f"{ROOT}/samples/mnist_mlp.py:mnist_mlp", "--input-shape", "2x784", "-o", "mlp")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert "matches PyTorch eager" in compiled.stdout
    assert (work / "mlp" / "manifest.json").is_file()
