"""Write a build's artifact directory atomically: library, manifest, content hashes.

The directory is written under a temporary name beside ``out_dir`` and renamed into place at the
end, so a failed build leaves nothing at ``out_dir`` and a reader never sees half an artifact. An
existing ``out_dir`` is replaced only when it is itself a graphopt artifact; anything else there
is the user's and is never deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graphopt import interrupts
from graphopt.errors import InputError
from graphopt.targets.runtime import MANIFEST, sha256_file
from graphopt.targets.runtime.manifest import FileFacts, Manifest

LIBRARY = "model.so"
#: Linker options of every artifact's library: ``-s`` leaves out the symbol table and the DWARF debug
#: info LLVM emits (a third of mobilenet_small's library; half of a compressed build's). The TVM
#: runtime finds the kernels and ``__tvm_ffi__library_bin`` through the dynamic symbol table, which stays.
LINK_OPTIONS = ["-s"]


def versions() -> dict[str, str]:
    """Versions of everything that shaped the artifact (recorded in the manifest)."""
    import torch
    import tvm
    import tvm_ffi

    import graphopt

    return {
        "graphopt": graphopt.__version__,
        "torch": torch.__version__,
        "tvm": tvm.__version__,
        "tvm_ffi": getattr(tvm_ffi, "__version__", "unknown"),
        "python": platform.python_version(),
    }


def check_out_dir(out_dir: str | Path) -> None:
    """``out_dir`` can take an artifact: absent, an empty folder, or an artifact (replaced)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"cannot write the artifact to {out_dir}: a file of that name exists")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise InputError(f"cannot write the artifact to {out_dir}: it is a non-empty directory that is not an artifact")


def write_artifact(
    out_dir: str | Path,
    manifest: Manifest,
    export_library: Callable[[str], dict[str, Any] | None],
    *,
    library: str = LIBRARY,
) -> Manifest:
    """Write library + manifest to ``out_dir`` atomically; returns the manifest with file hashes.

    ``export_library(path)`` writes the shared library (the target decides how: host compiler,
    cross compiler) and any files beside it (``library``: the name of the file the loader starts
    from, the program of a ``fallback="torch"`` build); a dict it returns joins the manifest
    (``Manifest.with_entries``). ``files`` gets the sha256 and size of every file written.
    """
    out_dir = Path(out_dir).absolute()
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
    try:
        manifest = manifest.with_entries(export_library(str(staging / library)))
        files = {path.name: FileFacts(sha256_file(path), path.stat().st_size) for path in sorted(staging.iterdir())}
        manifest = dataclasses.replace(manifest, library=library, files=files)
        manifest.write(staging)
        os.chmod(staging, 0o755)
        interrupts.check()
        _replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def remove_stale_staging(out_dir: Path) -> None:
    """Delete ``.NAME.tmp-PID-*`` folders beside ``out_dir`` left by a process that no longer runs
    (killed with SIGKILL, or a machine that lost power, mid-write)."""
    for path in out_dir.parent.glob(f".{out_dir.name}.tmp-*-*"):
        pid = path.name.removeprefix(f".{out_dir.name}.tmp-").split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` to ``out_dir``; an old artifact there is moved aside first, then deleted."""
    old = None
    if out_dir.exists():
        check_out_dir(out_dir)
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
