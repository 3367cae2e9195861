"""Unstructured and 2:4 magnitude pruning: zeros inside weights, reported for what they are.

``sparsify`` zeroes the smallest-magnitude weights of every Conv/Linear (per layer):

- ``unstructured``: the ``sparsity`` fraction of each layer's weights, wherever they are;
- ``2:4``: in every run of 4 consecutive input channels of one output (the layout NVIDIA's sparse
  tensor cores read), the 2 smallest; layers whose input channel count is not a multiple of 4 stay.

Tensor sizes do not change and dense kernels (everything graphopt compiles today) multiply the
zeros like any other number, so the compiled model is **not faster**; what shrinks is the stored
size once compressed (CSR, or 2:4's half values plus 2-bit indices), which the report counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from graphopt.errors import InputError
from graphopt.ir import Graph
from graphopt.passes._layers import CONV_KINDS, layer_of
from graphopt.pruning.dependency import resolve_ignored
from graphopt.pruning.shrink import _assign
from graphopt.pruning.structured import as_graph

PATTERNS = ("unstructured", "2:4")


@dataclass
class SparseLayer:
    name: str
    weights: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / max(self.weights, 1)


@dataclass
class SparsityReport:
    """Per layer: weights and zeros; in all: dense bytes and the bytes a compressed format would take."""

    pattern: str
    sparsity: float
    layers: list[SparseLayer] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    def compressed_bytes(self) -> int:
        """float32 storage of the sparsified weights: CSR (value + int32 column per nonzero, int32 row
        pointers) for unstructured, half the values plus 2 bits each for 2:4."""
        if self.pattern == "2:4":
            return sum(layer.weights // 2 * 4 + layer.weights // 2 * 2 // 8 for layer in self.layers)
        return sum((layer.weights - layer.zeros) * 8 for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "sparsity": self.sparsity,
            "weights": self.weights,
            "zeros": self.zeros,
            "dense_bytes": self.weights * 4,
            "compressed_bytes": self.compressed_bytes(),
            "layers": [{"name": x.name, "weights": x.weights, "zeros": x.zeros} for x in self.layers],
            "skipped": self.skipped,
            "notes": self.notes,
        }

    def table(self) -> str:
        lines = [f"sparsify ({self.pattern}, {self.sparsity:g}): {self.zeros:,} of {self.weights:,} weights are zero"]
        lines += [f"  {x.name:<32} {x.sparsity:6.1%} of {x.weights:,}" for x in self.layers]
        if self.skipped:
            lines.append(f"  kept dense: {', '.join(self.skipped)}")
        lines.append(f"dense {self.weights * 4:,} bytes; compressed {self.compressed_bytes():,} bytes")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _two_of_four(weight: torch.Tensor) -> torch.Tensor | None:
    """The 2:4 mask (True = keep) along input channels, or None when they do not come in fours."""
    if weight.dim() < 2 or weight.shape[1] % 4:
        return None
    moved = weight.detach().movedim(1, -1)  # (out, *kernel, in): runs of 4 input channels
    runs = moved.abs().reshape(-1, 4)
    keep = torch.zeros_like(runs, dtype=torch.bool)
    keep.scatter_(1, runs.topk(2, dim=1).indices, True)
    return keep.reshape(moved.shape).movedim(-1, 1)


def sparsify(
    model_or_graph: Any,
    example_inputs: Any = None,
    *,
    sparsity: float = 0.5,
    pattern: str = "unstructured",
    ignore: Iterable[str] = (),
) -> tuple[Graph, SparsityReport]:
    """Zero the smallest weights of every Conv/Linear; returns ``(graph, report)``. See the module docstring."""
    if pattern not in PATTERNS:
        raise InputError(f"unknown sparsity pattern '{pattern}' (choose {', '.join(PATTERNS)})")
    if pattern == "unstructured" and not 0 < sparsity < 1:
        raise InputError(f"sparsity must lie strictly between 0 and 1, got {sparsity}")
    graph = as_graph(model_or_graph, example_inputs)
    ignored = resolve_ignored(graph, ignore)
    report = SparsityReport(pattern, 0.5 if pattern == "2:4" else sparsity)
    for node in graph.module.graph.nodes:
        layer = layer_of(graph.module, node)
        if layer is None or layer.kind not in CONV_KINDS | {"linear"} or not layer.is_constant("weight"):
            continue
        name = str(node.target) if node.op == "call_module" else node.name
        weight = layer.get("weight")
        if node in ignored or weight is None:
            report.skipped.append(name)
            continue
        if pattern == "2:4":
            keep = _two_of_four(weight)
            if keep is None:
                report.skipped.append(name)
                continue
        else:
            count = int(weight.numel() * sparsity)
            keep = torch.ones(weight.numel(), dtype=torch.bool)
            keep[weight.detach().abs().flatten().argsort()[:count]] = False
            keep = keep.reshape(weight.shape)
        _assign(layer, "weight", torch.where(keep, weight.detach(), torch.zeros_like(weight)))
        report.layers.append(SparseLayer(name, weight.numel(), int((~keep).sum())))
    if not report.layers:
        raise InputError(f"nothing to sparsify in {graph.name}: no Conv/Linear layer with a constant weight qualifies")
    graph.refresh()
    report.notes.append(
        "tensor sizes are unchanged and graphopt's dense kernels multiply the zeros too: the compiled model is not "
        "faster; the gain is storage once compressed (and sparse hardware, e.g. 2:4 on NVIDIA Ampere+)"
    )
    return graph, report
