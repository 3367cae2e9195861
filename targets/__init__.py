"""Lowering graphopt's IR to TVM and building deployable artifacts. The only package importing tvm.

>>> compiled = graphopt.targets.build(graph, report, target="cpu", out_dir="out/mlp")
>>> compiled(np.zeros((1, 784), np.float32)).shape
(1, 10)

Importing this package is cheap and imports neither torch nor tvm: ``graphopt.targets.runtime``
(the deploy-time loader) lives under it and must run on a machine with only the TVM runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from graphopt.options import BuildOptions
from graphopt.targets.registry import TargetBackend, get_target, list_targets, register_target
from graphopt.targets.threads import configure_default_threads

configure_default_threads()  # before TVM's thread pool starts: one thread per physical core (threads.py)

__all__ = [
    "TargetBackend",
    "build",
    "check_build_request",
    "get_target",
    "list_targets",
    "load_artifact",
    "register_target",
]


def check_build_request(
    target: str, out_dir: str | Path | None = None, options: Mapping[str, Any] | None = None, **how: Any
) -> BuildOptions:
    """What can be checked before capture and passes: the target exists, ``out_dir`` can take an
    artifact, the options are known and well typed (``how``: ``BuildOptions.from_dict``'s label and
    suggestions). Returns the typed options."""
    from graphopt.targets.pipeline.artifact import check_out_dir

    backend = get_target(target)
    if out_dir is not None:
        check_out_dir(out_dir)
    typed = BuildOptions.from_dict(options or {}, extra_types=backend.option_types, **how)
    backend.check_options(typed)
    return typed


def build(
    graph: Any,
    report: Any = None,
    *,
    target: str = "cpu",
    out_dir: str | Path | None = None,
    check: Callable[[Any], dict[str, Any] | None] | None = None,
    **options: Any,
) -> Any:
    """Lower ``graph`` to TVM Relax, compile it for ``target`` and return a ``CompiledModel``.

    ``options`` are ``graphopt.options.BuildOptions`` (``dynamic_batch``, ``tune``, ``tune_trials``,
    ``num_cores``, ...) and the target's own (``TargetBackend.option_types``); an unknown one is
    refused, naming the nearest valid name. With ``out_dir`` the artifact (library +
    ``manifest.json``) is written atomically: into a temporary directory beside it, renamed at the
    end; on failure nothing is left at ``out_dir``. Failures are ``GraphoptError`` subclasses
    (``UnsupportedOpError`` lists every op the target cannot handle, with node names and source
    lines), never a raw TVM traceback.

    ``check`` (a ``graphopt.eager_check.EagerChecker``) is called with the compiled model before
    anything is written; it may raise (nothing is then left at ``out_dir``) and what it returns
    goes into the manifest.
    """
    from graphopt.targets.pipeline.builder import build_graph

    typed = check_build_request(target, out_dir, options)
    return build_graph(graph, report, target=target, out_dir=out_dir, options=typed, check=check)


def load_artifact(out_dir: str | Path, *, allow_mismatch: bool = False) -> Any:
    """Load an artifact written by ``build``; needs only the TVM runtime (see ``runtime``)."""
    from graphopt.targets.runtime import load_artifact as _load

    return _load(out_dir, allow_mismatch=allow_mismatch)
