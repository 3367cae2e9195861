"""Reports of what the pass pipeline did, as data, JSON and a readable table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from graphopt.ir import GraphStats


@dataclass
class PassRecord:
    """One pass run: wall time, graph size before and after, its own details, verify error."""

    name: str
    seconds: float
    before: GraphStats
    after: GraphStats
    changed: bool
    details: dict[str, Any] = field(default_factory=dict)
    max_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 6),
            "changed": self.changed,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "details": _jsonable(self.details),
            "max_error": self.max_error,
        }


@dataclass
class OptimizeReport:
    """The whole pipeline: the model, how it was captured, and one record per pass."""

    model: str
    capture_method: str
    initial: GraphStats
    passes: list[PassRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def final(self) -> GraphStats:
        return self.passes[-1].after if self.passes else self.initial

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "capture_method": self.capture_method,
            "initial": self.initial.to_dict(),
            "final": self.final.to_dict(),
            "seconds": round(self.seconds, 6),
            "passes": [p.to_dict() for p in self.passes],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> Any:
        """A rich Table: one row per pass with nodes, parameter bytes and FLOPs before -> after."""
        from rich.table import Table

        verified = any(record.max_error is not None for record in self.passes)
        title = f"graphopt: {self.model} (captured with {self.capture_method})"
        table = Table(title=title + (", every pass verified in PyTorch" if verified else ""))
        columns = ["pass", "time", "nodes", "param bytes", "FLOPs", "what changed"]
        for column in [*columns, "verify: max error"] if verified else columns:
            table.add_column(column, justify="left" if column in ("pass", "what changed") else "right")
        initial = [str(self.initial.nodes), human_bytes(self.initial.param_bytes), human_count(self.initial.flops)]
        table.add_row("(captured)", "", *initial, "", *([""] if verified else []))
        for record in self.passes:
            error = [f"{record.max_error:.2g} relative" if record.max_error is not None else ""] if verified else []
            table.add_row(
                record.name,
                f"{record.seconds * 1000:.1f} ms",
                _delta(record.before.nodes, record.after.nodes, str),
                _delta(record.before.param_bytes, record.after.param_bytes, human_bytes),
                _delta(record.before.flops, record.after.flops, human_count),
                summarize_details(record.details) if record.changed else "no change",
                *error,
            )
        return table


def _delta(before: int, after: int, fmt: Any) -> str:
    return fmt(after) if before == after else f"{fmt(before)} -> {fmt(after)}"


def summarize_details(details: dict[str, Any]) -> str:
    """``{"folded": 3, "bytes_saved": 1024}`` -> ``folded=3, bytes_saved=1.0 KiB``."""
    parts = []
    for key, value in details.items():
        if isinstance(value, (list, tuple, dict)):
            value = len(value)
        if "bytes" in key and isinstance(value, int):
            value = human_bytes(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def human_count(count: int) -> str:
    value = float(count)
    for unit in ("", "K", "M", "G", "T"):
        if abs(value) < 1000 or unit == "T":
            return f"{value:.0f}" if unit == "" else f"{value:.2f}{unit}"
        value /= 1000
    return f"{value:.2f}T"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return str(value)
