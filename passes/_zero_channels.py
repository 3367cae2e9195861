"""Remove output channels whose weights are all zero, shrinking the layer that reads them.

Channel ``k`` of a Conv/Linear ``P`` is dead when its weight slice and bias are zero, so its
output is exactly zero, and it stays zero through the ops between ``P`` and the next layer ``C``:
activations with ``f(0) = 0`` and BatchNorm when it maps 0 to 0 on that channel (``beta = 0`` and
``mean = 0`` or ``gamma = 0``). ``C`` then multiplies a zero, so dropping the channel from ``P``
(rows of weight and bias), from the BatchNorm (its four vectors) and from ``C`` (input columns)
computes the same function. Only straight chains are handled: every intermediate has one user,
``C`` is a Linear or an ungrouped Conv reading the chain directly (no flatten in between), and
at least one channel survives.
"""

from __future__ import annotations

import torch
from graphopt.passes._layers import CONV_KINDS, Layer, batch_norm_output, layer_of, only_user
from torch import fx

from graphopt.ir import Graph
from graphopt.op_kinds import op_kind

ZERO_PRESERVING = frozenset(
    {"relu", "relu6", "gelu", "silu", "tanh", "hardswish", "leaky_relu", "identity", "dropout", "contiguous"}
)
_SIZE_ATTRIBUTES = {"out": ("out_channels", "out_features", "num_features"), "in": ("in_channels", "in_features")}


def _weighted(layer: Layer | None) -> bool:
    return (
        layer is not None
        and layer.kind in CONV_KINDS | {"linear"}
        and layer.groups == 1
        and layer.is_constant("weight")
        and layer.is_constant("bias")
    )


def _dead_channels(layer: Layer) -> torch.Tensor:
    weight, bias = layer.get("weight"), layer.get("bias")
    assert weight is not None
    dead = (weight.reshape(weight.shape[0], -1) == 0).all(dim=1)
    return dead & (bias == 0) if bias is not None else dead


def _chain(graph: Graph, producer: fx.Node) -> tuple[list[Layer], Layer] | None:
    """BatchNorms between ``producer`` and the consuming layer, and that layer; None if not a chain."""
    norms, current = [], producer
    while (user := only_user(current)) is not None:
        kind = op_kind(graph.module, user)
        if kind == "batch_norm":
            norm = layer_of(graph.module, user)
            output = batch_norm_output(norm) if norm is not None else None
            if norm is None or output is None or user.args[0] is not current:
                return None
            norms.append(norm)
            current = output
        elif kind in ZERO_PRESERVING and user.args[0] is current:
            current = user
        else:
            consumer = layer_of(graph.module, user)
            if not _weighted(consumer) or consumer is None or consumer.input is not current:
                return None
            return norms, consumer
    return None


def _norm_keeps_zero(norm: Layer) -> torch.Tensor:
    gamma, beta, mean = norm.get("weight"), norm.get("bias"), norm.get("running_mean")
    assert mean is not None
    zero_shift = beta == 0 if beta is not None else torch.ones_like(mean, dtype=torch.bool)
    return zero_shift & ((mean == 0) | (gamma == 0 if gamma is not None else False))


def _resize(layer: Layer, side: str, size: int) -> None:
    if layer.submodule is not None:
        for attribute in _SIZE_ATTRIBUTES[side]:
            if hasattr(layer.submodule, attribute):
                setattr(layer.submodule, attribute, size)


def shrink_zero_channels(graph: Graph) -> list[str]:
    """Remove dead output channels everywhere they are removable; returns "layer: n channels" lines."""
    removed = []
    for node in list(graph.module.graph.nodes):
        producer = layer_of(graph.module, node)
        if not _weighted(producer) or producer is None:
            continue
        dead = _dead_channels(producer)
        if not dead.any() or dead.all():
            continue
        found = _chain(graph, node)
        if found is None:
            continue
        norms, consumer = found
        for norm in norms:
            dead &= _norm_keeps_zero(norm)
        if not dead.any():
            continue
        keep = ~dead
        for layer in [producer, *norms]:
            for role in ("weight", "bias", "running_mean", "running_var"):
                if role in ("running_mean", "running_var") and layer.kind != "batch_norm":
                    continue
                tensor = layer.get(role)
                if tensor is not None:
                    layer.set(role, tensor[keep])
            _resize(layer, "out", int(keep.sum()))
        consumer_weight = consumer.get("weight")
        assert consumer_weight is not None
        consumer.set("weight", consumer_weight[:, keep])
        _resize(consumer, "in", int(keep.sum()))
        removed.append(f"{node.name}: {int(dead.sum())} of {dead.numel()} channels")
    return removed
