"""How a pass is declared and found: one decorator, one registry, entry points for plugins.

A pass is a function ``fn(graph, *, option=default, ...) -> PassResult`` that edits the ``Graph`` it
is given (the pass manager hands it a copy) and says whether it changed anything::

    @register_pass("remove_dropout", reports=("removed",))
    def remove_dropout(graph: Graph) -> PassResult:
        '''Drop eval-mode Dropout nodes.'''
        ...
        return PassResult(graph, changed=removed > 0, details={"removed": removed})

Passes in other packages register through the entry-point group ``graphopt.passes``; the entry
point may name a module (imported, its decorators register) or a decorated function.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

from graphopt.errors import GraphoptError, UnknownPassError
from graphopt.ir import Graph

ENTRY_POINT_GROUP = "graphopt.passes"


@dataclass
class PassResult:
    """What a pass returns: the graph, whether it changed, and its pass-specific report."""

    graph: Graph
    changed: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PassInfo:
    """A registered pass: its name, what it does, its options, what it needs and reports."""

    name: str
    description: str
    function: Callable[..., PassResult]
    options: dict[str, Any]
    requires: tuple[str, ...] = ()
    reports: tuple[str, ...] = ()
    tolerance: float | None = None
    origin: str = ""
    #: Each option's declared type (the signature's annotation, else its default's type).
    option_types: dict[str, Any] = field(default_factory=dict)

    def __call__(self, graph: Graph, **options: Any) -> PassResult:
        return self.function(graph, **options)


_REGISTRY: dict[str, PassInfo] = {}
_discovered = False
#: Context names a pass may list in ``requires``; the pass manager passes them as keyword arguments.
CONTEXT_NAMES = ("calibration_data", "labels")


def register_pass(
    name: str | None = None,
    *,
    description: str | None = None,
    requires: Iterable[str] = (),
    reports: Iterable[str] = (),
    tolerance: float | None = None,
    replace: bool = False,
) -> Callable[[Callable[..., PassResult]], Callable[..., PassResult]]:
    """Register the decorated function as a pass (name defaults to the function's name).

    ``requires`` lists what the pass needs beyond the graph: "eval_mode" (the model must not be
    in training mode) or context from the caller ("calibration_data", "labels"). ``tolerance``
    overrides verify mode's tolerance for passes that trade accuracy (quantization, pruning).
    """

    def decorate(function: Callable[..., PassResult]) -> Callable[..., PassResult]:
        pass_name = name or function.__name__
        if pass_name in _REGISTRY and not replace and _REGISTRY[pass_name].function is not function:
            raise GraphoptError(f"a pass named '{pass_name}' is already registered by {_REGISTRY[pass_name].origin}")
        doc = inspect.getdoc(function) or ""
        parameters = inspect.signature(function).parameters.values()
        options = {
            p.name: p.default
            for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in CONTEXT_NAMES
        }
        _REGISTRY[pass_name] = PassInfo(
            name=pass_name,
            description=description or (doc.splitlines()[0] if doc else ""),
            function=function,
            options=options,
            requires=tuple(requires),
            reports=tuple(reports),
            tolerance=tolerance,
            origin=function.__module__,
            option_types=_option_types(function, options),
        )
        return function

    return decorate


def _option_types(function: Callable[..., Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Option name -> type, from the annotations (resolved) or, where there are none, the default's type."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an annotation naming what the pass's module does not import: fall back
        hints = {}
    types: dict[str, Any] = {}
    for name, default in defaults.items():
        if name in hints:
            types[name] = hints[name]
        elif default is not None and default is not inspect.Parameter.empty:
            types[name] = type(default)
        else:
            types[name] = Any
    return types


def unregister_pass(name: str) -> None:
    """Remove a pass (tests and notebooks that redefine one)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    """Import the built-in passes and every plugin named in the ``graphopt.passes`` entry points."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    importlib.import_module("graphopt.passes")
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:
            raise GraphoptError(f"cannot load pass plugin '{entry.name}' ({entry.value}): {error}") from error


def get_pass(name: str) -> PassInfo:
    """The registered pass called ``name``; an unknown name lists the known ones."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownPassError(f"unknown pass '{name}' (registered passes: {known})") from None


def list_passes() -> list[PassInfo]:
    """All registered passes, built-in and plugins, sorted by name."""
    _discover()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


class on_node:  # noqa: N801 - used as a context manager, reads as a phrase
    """Tag any exception raised inside the block with ``node``, so the error names it.

    >>> for node in graph.compute_nodes():
    ...     with on_node(node):
    ...         rewrite(node)
    """

    def __init__(self, node: Any) -> None:
        self.node = node

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> Literal[False]:
        if error is not None and not hasattr(error, "graphopt_node"):
            error.graphopt_node = self.node  # type: ignore[attr-defined]
        return False
