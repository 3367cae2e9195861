"""Fine-tuning a pruned or weight-shared graph without undoing what made it small.

Deep Compression retrains after each step: a pruned layer's zeros stay zero (their gradients are
masked, and they are reset after every step), and a shared layer keeps its codebook: the gradients of
all the weights that share a centroid are summed into that centroid, which is what is trained, and
the weights are rebuilt from the centroids after every step. A layer shared with channel scales
(``share_weights(channel_scale=True)``) is trained the same way through its one codebook, each
weight's gradient times its channel's scale summed into its centroid (the scales stay fixed; the
centroids, float16 values, are trained in float32 and rounded after every step). Any
other layer counts as shared when it has at most 256 distinct values (what the compressed artifact stores as a codebook); a zero among them stays
zero. Biases are trained as they are; those ``share_weights(half_biases=True)`` rounded to float16
are trained in a float32 copy and rounded again after every step.

>>> tuned, report = graphopt.fine_tune(shared, (x_train, y_train), epochs=3)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from graphopt.compression.codec import ScaledCodebook
from graphopt.compression.layers import HALF_TENSORS, SCALED_CODEBOOKS, small_tensors, weight_layers
from graphopt.compression.training import train
from graphopt.ir import Graph

MAX_CODEBOOK = 256


@dataclass
class FineTuneReport:
    """Mean training loss per epoch, and which layers kept a codebook or a zero mask."""

    losses: list[float] = field(default_factory=list)
    codebook_layers: list[str] = field(default_factory=list)
    masked_layers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Codebook:
    """A shared layer trained through its centroids (the zero centroid, if any, frozen)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        values, labels = torch.unique(tensor.detach(), return_inverse=True)
        self.labels = labels.flatten()
        self.centroids = values.clone().requires_grad_(True)
        self.frozen = values == 0
        tensor.requires_grad_(True)
        tensor.register_hook(self._to_centroids)

    def _to_centroids(self, grad: torch.Tensor) -> torch.Tensor:
        summed = torch.zeros_like(self.centroids).index_add_(0, self.labels, grad.flatten())
        self.centroids.grad = summed.masked_fill(self.frozen, 0)
        return torch.zeros_like(grad)

    def rebuild(self) -> None:
        with torch.no_grad():
            self.tensor.copy_(self.centroids[self.labels].view_as(self.tensor))


class _Scaled:
    """A layer ``scales[c] * centroids[labels]`` trained through its centroids (a zero centroid frozen)."""

    def __init__(self, name: str, tensor: torch.Tensor, factors: ScaledCodebook) -> None:
        self.name, self.tensor, self.factors = name, tensor, factors
        self.labels = torch.from_numpy(factors.labels.astype("int64"))
        shape = (-1, *([1] * (factors.labels.ndim - 1)))
        self.scales = torch.from_numpy(factors.scales.copy()).view(shape)
        self.centroids = torch.from_numpy(factors.centroids.copy()).requires_grad_(True)
        self.frozen = self.centroids.detach() == 0
        tensor.requires_grad_(True)
        tensor.register_hook(self._to_centroids)

    def _to_centroids(self, grad: torch.Tensor) -> torch.Tensor:
        moved = torch.movedim(grad, self.factors.axis, 0) * self.scales
        summed = torch.zeros_like(self.centroids).index_add_(0, self.labels.flatten(), moved.flatten())
        self.centroids.grad = summed.masked_fill(self.frozen, 0)
        return torch.zeros_like(grad)

    def rebuild(self) -> None:
        with torch.no_grad():
            centroids = self.centroids.half().float()  # float16 values, as share_weights made them
            self.tensor.copy_(torch.movedim(self.scales * centroids[self.labels], 0, self.factors.axis))

    def trained(self) -> ScaledCodebook:
        """The factors with the trained centroids; the tensor set to their exact (codec) rebuild."""
        centroids = self.centroids.detach().half().float().numpy().copy()
        factors = ScaledCodebook(self.factors.axis, self.factors.scales, centroids, self.factors.labels)
        with torch.no_grad():
            self.tensor.copy_(torch.from_numpy(factors.values()))
        return factors


class _Half:
    """A tensor kept at float16 values: a float32 master copy is trained, the tensor is its rounding."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.master = tensor.detach().clone().requires_grad_(True)
        tensor.requires_grad_(True)
        tensor.register_hook(self._to_master)

    def _to_master(self, grad: torch.Tensor) -> torch.Tensor:
        self.master.grad = grad.clone()
        return torch.zeros_like(grad)

    def rebuild(self) -> None:
        with torch.no_grad():
            self.tensor.copy_(self.master.half().float())


class _Masked:
    """A dense layer whose zeros (pruned weights) stay zero."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor, self.mask = tensor, tensor.detach() != 0
        tensor.requires_grad_(True)
        tensor.register_hook(lambda grad: grad * self.mask)

    def rebuild(self) -> None:
        with torch.no_grad():
            self.tensor.mul_(self.mask)


def fine_tune(
    graph: Graph,
    train_data: Any,
    *,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 64,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    seed: int = 0,
) -> tuple[Graph, FineTuneReport]:
    """Train a copy of ``graph`` on ``train_data`` keeping its zeros and codebooks; returns ``(graph, report)``.

    ``train_data`` as described in ``graphopt.compression.training``; ``loss(logits, labels)``.
    """
    graph = graph.copy()
    report = FineTuneReport()
    keepers: list[_Codebook | _Masked | _Scaled | _Half] = []
    tensors: list[torch.Tensor] = []
    weights = {id(layer.tensor) for layer in weight_layers(graph)}
    factors = graph.module.meta.get(SCALED_CODEBOOKS, {})
    for layer in weight_layers(graph):
        hint = factors.get(layer.name)
        if hint is not None and np.array_equal(hint.values(), layer.tensor.detach().numpy()):
            scaled = _Scaled(layer.name, layer.tensor, hint)
            keepers.append(scaled)
            tensors.append(scaled.centroids)
            report.codebook_layers.append(layer.name)
        elif len(torch.unique(layer.tensor)) <= MAX_CODEBOOK:
            codebook = _Codebook(layer.tensor)
            keepers.append(codebook)
            tensors.append(codebook.centroids)
            report.codebook_layers.append(layer.name)
        else:
            keepers.append(_Masked(layer.tensor))
            tensors.append(layer.tensor)
            if not bool(keepers[-1].mask.all()):  # type: ignore[union-attr]
                report.masked_layers.append(layer.name)
    halves = set(graph.module.meta.get(HALF_TENSORS, []))
    for name, tensor in small_tensors(graph).items():
        if name in halves and torch.equal(tensor, tensor.half().float()):
            keepers.append(_Half(tensor))
            tensors.append(keepers[-1].master)  # type: ignore[union-attr]
            weights.add(id(tensor))
    others = [*graph.module.parameters(), *graph.module.buffers()]
    for tensor in others:
        if tensor.is_floating_point() and id(tensor) not in weights:
            tensor.requires_grad_(True)
            tensors.append(tensor)

    def rebuild() -> None:
        for keeper in keepers:
            keeper.rebuild()

    try:
        report.losses = train(
            graph.module,
            tensors,
            train_data,
            lambda _inputs, outputs, labels: loss(outputs, labels),
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            after_step=rebuild,
        )
        for keeper in keepers:
            if isinstance(keeper, _Scaled):
                factors[keeper.name] = keeper.trained()
    finally:
        for tensor in others:
            tensor.requires_grad_(False)
            tensor.grad = None
            tensor._backward_hooks = None  # type: ignore[attr-defined]
    graph.notes.append(f"fine-tuned {len(report.losses)} epoch(s), zeros and codebooks kept")
    return graph, report
