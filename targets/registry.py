"""The target registry: what each target contributes to a build, so a new target plugs in by name.

A target is a ``TargetBackend``: how to make its ``tvm.target.Target``, the schedule step of the
Relax pipeline (the seam where default schedules, dlight or tuning go), how to export the library
(a cross compiler for aarch64), and which runtime device runs it. ``build`` looks a name up here;
a name not registered yet is imported as ``graphopt.targets.<name>``, whose import registers it.
So ``targets/arm/__init__.py`` only needs to call ``register_target(TargetBackend(name="arm", ...))``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphopt.errors import InputError

#: The key under which a schedule step may leave, in the options dict it is given, what tuning decided
#: (the cpu target: which build was kept and the times); the build records it as ``build.tuning``.
TUNING_OUTCOME = "tuning_outcome"


@dataclass(frozen=True)
class TargetBackend:
    """Everything ``build`` needs to know about one target.

    - ``make_target(options)`` -> ``tvm.target.Target`` (options: the build's extra keyword options).
    - ``schedule(mod, target, options)`` -> IRModule: runs after FuseTIR, before lowering to the VM.
    - ``export_library(executable, path)`` writes the shared library (default: host compiler).
    - ``package(executable, target, directory)`` writes more files into the artifact directory
      after the library (CUDA: the nvcc-compiled kernels); a dict it returns joins the manifest.
    - ``describe(target)`` -> dict recorded as the manifest's ``target.facts`` (host CPU, features, ...).
    - ``device``: runtime device kind, "cpu" or "cuda"; ``runs_on_host``: False for cross targets.
    - ``option_types``: build options of this target beyond ``graphopt.options.BuildOptions``, name ->
      type (they reach ``make_target``/``schedule`` in ``options`` like the others).
    - ``check_options(options)``: refuse, with an ``InputError``, typed ``BuildOptions`` this target
      cannot honour (``tune`` where it cannot measure); called by ``check_build_request``, before
      capture and passes.
    """

    name: str
    make_target: Callable[[dict[str, Any]], Any]
    schedule: Callable[[Any, Any, dict[str, Any]], Any]
    device: str = "cpu"
    export_library: Callable[[Any, str], Any] | None = None
    package: Callable[[Any, Any, str], dict[str, Any] | None] | None = None
    describe: Callable[[Any], dict[str, Any]] = field(default=lambda target: {})
    runs_on_host: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    option_types: dict[str, Any] = field(default_factory=dict)
    check_options: Callable[[Any], None] = field(default=lambda options: None)


_TARGETS: dict[str, TargetBackend] = {}


def register_target(backend: TargetBackend) -> TargetBackend:
    """Register (or replace) a target under ``backend.name``."""
    _TARGETS[backend.name] = backend
    return backend


def get_target(name: str) -> TargetBackend:
    """The backend for ``name``, importing ``graphopt.targets.<name>`` on first use."""
    if name not in _TARGETS:
        try:
            importlib.import_module(f"graphopt.targets.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"graphopt.targets.{name}":
                raise
    if name not in _TARGETS:
        raise InputError(f"unknown target '{name}' (known: {', '.join(list_targets())})")
    return _TARGETS[name]


def list_targets() -> list[str]:
    """Registered target names plus the built-in ones that register on import."""
    return sorted(set(_TARGETS) | {"cpu", "cuda", "arm"})
