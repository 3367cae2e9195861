"""Remove output channels whose weights are all zero, shrinking the layers around them.

When channel ``k`` of a Conv/Linear ``P`` has an all-zero weight slice, its output is the
constant ``bias[k]`` at every position. Between ``P`` and the next layer ``C`` it passes through
per-channel ops (BatchNorm, activations), so it reaches ``C`` as a constant ``c[k]``, which this
module computes by running those very ops on a one-pixel tensor. Then:

- ``c[k] == 0``: ``C`` multiplies a zero; the channel can go, whatever ``C`` is;
- ``c[k] != 0``: ``C`` adds ``c[k] * sum(C.weight[:, k])`` to every output; that is folded into
  ``C``'s bias when ``C`` is a Linear or an unpadded convolution (with padding the border sees
  zeros instead, so such channels stay).

Removing a channel drops it from ``P`` (weight rows and bias), from every BatchNorm on the way
(its four vectors) and from ``C`` (input columns). Only straight chains are handled: every
intermediate has one user, ``C`` reads the chain directly (no flatten between them), ``P`` and
``C`` are ungrouped, and at least one channel survives.
"""

from __future__ import annotations

from typing import Any

import torch
from graphopt.passes._layers import CONV_KINDS, Layer, batch_norm_output, fetch_attr, layer_of, only_user
from torch import fx

from graphopt.ir import Graph
from graphopt.op_kinds import op_kind

PER_CHANNEL = frozenset(
    {"relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "leaky_relu", "identity", "dropout", "contiguous"}
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


def _chain(graph: Graph, producer: fx.Node) -> tuple[list[fx.Node], list[Layer], Layer] | None:
    """(per-channel nodes after ``producer``, the BatchNorms among them, the consuming layer)."""
    steps: list[fx.Node] = []
    norms: list[Layer] = []
    current = producer
    while (user := only_user(current)) is not None:
        kind = op_kind(graph.module, user)
        if user.args[0] is not current:
            return None
        if kind == "batch_norm":
            norm = layer_of(graph.module, user)
            output = batch_norm_output(norm) if norm is not None else None
            if norm is None or output is None:
                return None
            norms.append(norm)
            steps += [user] if output is user else [user, output]
            current = output
        elif kind in PER_CHANNEL:
            steps.append(user)
            current = user
        else:
            consumer = layer_of(graph.module, user)
            if consumer is None or not _weighted(consumer):
                return None
            return steps, norms, consumer
    return None


def _reaching_values(graph: Graph, producer: Layer, steps: list[fx.Node], rank: int) -> torch.Tensor:
    """The constant each channel reaches the consumer with when its weights are zero."""
    bias = producer.get("bias")
    weight = producer.get("weight")
    assert weight is not None
    channels = weight.shape[0]
    start = bias.detach() if bias is not None else torch.zeros(channels, dtype=weight.dtype)
    interpreter = fx.Interpreter(graph.module)
    interpreter.env[producer.node] = start.reshape(1, channels, *([1] * max(rank - 2, 0)))
    with torch.no_grad():
        for step in steps:
            for source in step.all_input_nodes:
                if source not in interpreter.env and source.op == "get_attr":
                    interpreter.env[source] = fetch_attr(graph.module, str(source.target))
            interpreter.env[step] = interpreter.run_node(step)
    final = interpreter.env[steps[-1]] if steps else interpreter.env[producer.node]
    return final.reshape(channels)


def _absorbs_constants(consumer: Layer) -> bool:
    """True when a constant input channel adds the same amount to every output position."""
    if consumer.kind == "linear":
        return True
    padding: Any
    if consumer.submodule is not None:
        padding = consumer.submodule.padding
    else:
        args = consumer.node.args
        padding = consumer.node.kwargs.get("padding", args[4] if len(args) > 4 else 0)
    if isinstance(padding, str):
        return padding == "valid"
    return all(p == 0 for p in ([padding] if isinstance(padding, int) else padding))


def _resize(layer: Layer, side: str, size: int) -> None:
    if layer.submodule is not None:
        for attribute in _SIZE_ATTRIBUTES[side]:
            if hasattr(layer.submodule, attribute):
                setattr(layer.submodule, attribute, size)


def _remove(producer: Layer, norms: list[Layer], consumer: Layer, keep: torch.Tensor, constants: torch.Tensor) -> None:
    """Drop the channels ``~keep``, folding their ``constants`` into the consumer's bias."""
    consumer_weight = consumer.get("weight")
    assert consumer_weight is not None
    if constants.any():
        gone = ~keep
        extra = consumer_weight[:, gone].double().reshape(consumer_weight.shape[0], int(gone.sum()), -1).sum(2)
        shift = extra @ constants[gone].double()
        bias = consumer.get("bias")
        old = bias.double() if bias is not None else torch.zeros_like(shift)
        consumer.set("bias", (old + shift).to(consumer_weight.dtype))
    for layer in [producer, *norms]:
        for role in ("weight", "bias", "running_mean", "running_var"):
            if role in ("running_mean", "running_var") and layer.kind != "batch_norm":
                continue
            tensor = layer.get(role)
            if tensor is not None:
                layer.set(role, tensor[keep])
        _resize(layer, "out", int(keep.sum()))
    consumer.set("weight", consumer_weight[:, keep])
    _resize(consumer, "in", int(keep.sum()))


def shrink_zero_channels(graph: Graph) -> list[str]:
    """Remove all-zero output channels where the chain allows it; returns "layer: n of m channels" lines."""
    removed = []
    for node in list(graph.module.graph.nodes):
        producer = layer_of(graph.module, node)
        if producer is None or not _weighted(producer):
            continue
        weight = producer.get("weight")
        assert weight is not None
        dead = (weight.reshape(weight.shape[0], -1) == 0).all(dim=1)
        found = _chain(graph, node) if dead.any() and not dead.all() else None
        if found is None:
            continue
        steps, norms, consumer = found
        reaching = _reaching_values(graph, producer, steps, len(graph.info(node).shape or ()))
        removable = dead & ((reaching == 0) | _absorbs_constants(consumer))
        if not removable.any() or removable.all():
            continue
        _remove(producer, norms, consumer, ~removable, torch.where(removable, reaching, torch.zeros_like(reaching)))
        removed.append(f"{node.name}: {int(removable.sum())} of {removable.numel()} channels")
    return removed
