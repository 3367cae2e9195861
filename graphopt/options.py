"""Typed options: the build's ``BuildOptions``, and the conversion every option value goes through.

Options refuse what they do not know, naming the nearest valid name (as TVM's
``PassContext(config=...)`` raises on an unregistered key), and check each value against its
declared type: a build option's field type, a pass option's annotation in the pass's signature.
Values typed on a command line arrive as ``OptionText`` and are parsed for that type
(``"2"`` -> 2, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2]); values from Python are checked as given
(an int is accepted where a float is declared, nothing else is converted).

>>> BuildOptions.from_dict({"tune": True, "tune_trials": 8})
>>> BuildOptions.from_dict({"tune_trails": 8})
InputError: unknown option 'tune_trails' (did you mean 'tune_trials'?)
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphopt.errors import InputError


class OptionText(str):
    """A value as typed on the command line: parsed for the option's type, not taken as a string."""


def nearest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, else the list of them."""
    candidates = sorted(set(known))
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(candidates)})" if candidates else " (there are none)"


def describe_type(annotation: Any) -> str:
    """``int`` -> "an integer", ``float | None`` -> "a number or None", ..."""
    if annotation is Any:
        return "any value"
    if _is_union(annotation):
        return " or ".join(describe_type(a) for a in typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        (item, *_) = typing.get_args(annotation) or (Any,)
        return f"a list of {describe_type(item).removeprefix('a ').removeprefix('an ')}s"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    return names.get(annotation, "None" if annotation is type(None) else getattr(annotation, "__name__", "a value"))


def coerce(value: Any, annotation: Any, label: str) -> Any:
    """``value`` as ``annotation`` (see the module docstring); ``InputError`` naming ``label``, value and type."""
    try:
        return _coerce(value, annotation)
    except (ValueError, TypeError, SyntaxError):
        shown = str(value) if isinstance(value, OptionText) else repr(value)
        raise InputError(f"{label}={shown}: expected {describe_type(annotation)}") from None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(value: Any, annotation: Any) -> Any:
    text = isinstance(value, OptionText)
    if annotation is Any or annotation is None:
        return _literal(value) if text else value
    if _is_union(annotation):
        choices = typing.get_args(annotation)
        if type(None) in choices and (value is None or (text and value.strip().lower() == "none")):
            return None
        # A command-line string is a string only when nothing more specific reads it.
        ordered = sorted((c for c in choices if c is not type(None)), key=lambda c: c is str)
        for choice in ordered:
            try:
                return _coerce(value, choice)
            except (ValueError, TypeError, SyntaxError):
                continue
        raise ValueError(value)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        parsed = _literal(value) if text else value
        if parsed not in choices and value not in choices:
            raise ValueError(value)
        return parsed if parsed in choices else str(value)
    if origin in (list, tuple):
        items = _literal(value) if text else value
        if isinstance(items, str):
            items = [part.strip() for part in items.split(",") if part.strip()] if text else None
        if not isinstance(items, (list, tuple)):
            raise TypeError(value)
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        converted = [_coerce(OptionText(i) if text and isinstance(i, str) else i, item_type) for i in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise TypeError(value)
    if annotation is int:
        if text:
            return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(value)
    if annotation is float:
        if text:
            return float(value.strip())
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(value)
    if annotation is str:
        if isinstance(value, str):
            return str(value)
        raise TypeError(value)
    if annotation is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise TypeError(value)
    if isinstance(annotation, type):
        parsed = _literal(value) if text else value
        if isinstance(parsed, annotation):
            return parsed
        raise TypeError(value)
    return value  # an annotation this module does not know: not checked


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return str(text).strip()


_FLAGS = {"tune_trials": "--tune-trials", "tune_seconds": "--tune-seconds"}


def _flagged(name: str) -> str:
    """``tune_seconds (--tune-seconds)``: the option's name and, where it has one, its CLI flag."""
    return f"{name} ({_FLAGS[name]})" if name in _FLAGS else name


@dataclass(frozen=True)
class BuildOptions:
    """The options of ``graphopt.compile`` / ``graphopt.targets.build`` beyond the target and ``out_dir``.

    ``extra`` holds options a plugin target declares (``TargetBackend.option_types``).
    """

    dynamic_batch: bool = False  #: accept any batch size at run time
    dynamic_seq_len: int | None = None  #: accept any sequence length (dim 1 of 2+-d inputs) up to this bound
    tune: bool = False  #: tune kernels with MetaSchedule (cpu)
    tune_trials: int = 64  #: MetaSchedule trials
    tune_seconds: float | None = None  #: stop tuning after about this long
    tune_db: str | Path | None = None  #: tuning database to reuse and extend
    tune_rpc: str | None = None  #: KEY@HOST:PORT of a TVM RPC tracker to measure candidates on
    num_cores: int | None = None  #: threads the kernels are scheduled for (cpu; default: all)
    mcpu: str | None = None  #: LLVM CPU name (cpu, arm)
    mattr: str | list[str] | None = None  #: LLVM features, "+avx2,-avx512f" or a list (cpu, arm)
    cuda_arch: str | None = None  #: e.g. "sm_90" (cuda)
    arm_mcpu: str | None = None  #: as mcpu, for target arm only
    arm_mattr: str | list[str] | None = None  #: as mattr, for target arm only
    arm_num_cores: int | None = None  #: as num_cores, for target arm only
    compress: bool = False  #: weights beside the library, compressed (graphopt.share_weights, magnitude_prune)
    decode: str | None = (
        None  #: compressed weights: "load" (default: decoded once) or "kernel" (indices kept, LUT gather)
    )
    pack_library: bool = False  #: the library xz-packed in the artifact (model.so.xz), unpacked at load
    fallback: str | None = None  #: "torch": what TVM cannot lower runs in PyTorch between compiled segments
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tune_trials", "num_cores", "arm_num_cores", "dynamic_seq_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"option {_flagged(name)}={value}: expected a positive integer")
        if self.tune_seconds is not None and self.tune_seconds <= 0:
            raise InputError(f"option {_flagged('tune_seconds')}={self.tune_seconds}: expected a positive number")
        if self.decode not in (None, "load", "kernel"):
            raise InputError(f"option decode={self.decode!r}: expected 'load' or 'kernel'")
        if self.fallback not in (None, "torch"):
            raise InputError(f"option fallback={self.fallback!r}: expected 'torch' (--fallback torch)")
        combined = [
            name for name in ("dynamic_batch", "dynamic_seq_len", "compress", "pack_library") if getattr(self, name)
        ]
        if self.fallback and combined:
            raise InputError(f"fallback='torch' (--fallback torch) does not combine with {', '.join(combined)} yet")
        if self.tune_rpc and not self.tune:
            raise InputError("tune_rpc (--tune-rpc) measures tuning candidates remotely: it needs tune=True (--tune)")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(
        cls,
        options: Mapping[str, Any],
        *,
        extra_types: Mapping[str, Any] | None = None,
        label: str = "option",
        also_known: Iterable[str] = (),
    ) -> BuildOptions:
        """Checked and converted ``options``; ``also_known`` only widens the did-you-mean suggestions."""
        hints = typing.get_type_hints(cls)
        extra_types = dict(extra_types or {})
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in options.items():
            if name in hints and name != "extra":
                values[name] = coerce(value, hints[name], f"{label} {name}")
            elif name in extra_types:
                extra[name] = coerce(value, extra_types[name], f"{label} {name}")
            else:
                known = [*cls.names(), *extra_types, *also_known]
                raise InputError(f"unknown {label} '{name}'{nearest(name, known)}")
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The options as the targets read them (``options.get(name)``): set ones only, ``extra`` merged."""
        values = {name: getattr(self, name) for name in self.names()}
        return {**{k: v for k, v in values.items() if v is not None}, **self.extra}
