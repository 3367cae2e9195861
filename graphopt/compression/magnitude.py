"""Unstructured magnitude pruning: the smallest weights of each layer set to exactly zero.

Han et al. (2015): within a layer, the ``sparsity`` fraction of weights with the smallest absolute
value is zeroed (ties broken by position, so exactly ``round(sparsity * size)`` become zero). The
shapes do not change; the compressed artifact stores the zeros as a bit mask, not as values. This
is the unstructured kind; removing whole channels (structured pruning) is ``graphopt.pruning``'s.

>>> pruned, report = graphopt.magnitude_prune(model, torch.randn(1, 784), sparsity=0.9)
>>> report.layers[0].sparsity
0.9
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from graphopt.compression.layers import (
    COMPRESSION_NOTE,
    Layer,
    output_error,
    per_layer,
    prepare_graph,
    select_layers,
    weight_layers,
)
from graphopt.errors import InputError
from graphopt.ir import Graph


@dataclass(frozen=True)
class LayerPruning:
    """One layer after pruning: its size and how many weights are zero."""

    name: str
    elements: int
    zeros: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.elements if self.elements else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "elements": self.elements, "zeros": self.zeros, "sparsity": self.sparsity}


@dataclass
class PruningReport:
    """Per-layer sparsity after ``magnitude_prune`` and the output error on the example inputs."""

    layers: list[LayerPruning] = field(default_factory=list)
    output_error: float = 0.0

    @property
    def sparsity(self) -> float:
        elements = sum(layer.elements for layer in self.layers)
        return sum(layer.zeros for layer in self.layers) / elements if elements else 0.0

    def to_dict(self) -> dict[str, Any]:
        layers = [layer.to_dict() for layer in self.layers]
        return {"layers": layers, "sparsity": self.sparsity, "output_error": self.output_error}


def check_sparsity(sparsity: float) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise InputError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity)


def magnitude_prune(
    model_or_graph: Any,
    example_inputs: Any = None,
    *,
    sparsity: float | dict[str, float] = 0.9,
    layers: Any = None,
    passes: Any = "O2",
) -> tuple[Graph, PruningReport]:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights in each layer; returns ``(graph, report)``.

    ``sparsity``: one fraction for every layer, or ``{name or glob: fraction}``. ``layers`` and
    ``passes`` as in ``share_weights``. The model (or graph) given is never modified.
    """
    graph = prepare_graph(model_or_graph, example_inputs, passes)
    reference = graph.copy()
    chosen = select_layers(weight_layers(graph), layers)
    report = PruningReport()
    for layer, fraction in per_layer(chosen, sparsity, "sparsity", check_sparsity):
        report.layers.append(_prune_layer(layer, fraction))
    report.output_error = output_error(reference, graph)
    graph.notes.append(
        f"{COMPRESSION_NOTE} magnitude-pruned {len(report.layers)} layer(s) to {report.sparsity:.1%} zeros, "
        f"output error {report.output_error:.3g}"
    )
    return graph, report


def _prune_layer(layer: Layer, sparsity: float) -> LayerPruning:
    tensor = layer.tensor
    count = round(sparsity * tensor.numel())
    with torch.no_grad():
        if count:
            order = torch.argsort(tensor.detach().abs().flatten(), stable=True)
            tensor.view(-1)[order[:count]] = 0
        zeros = int((tensor == 0).sum())
    return LayerPruning(layer.name, tensor.numel(), zeros)
