"""Remove output channels whose weights are all zero, shrinking the layers around them.

When channel ``k`` of a Conv/Linear ``P`` has an all-zero weight slice, its output is the
constant ``bias[k]`` at every position. Between ``P`` and the next layer ``C`` it passes through
per-channel ops (BatchNorm, activations, max-pooling, adaptive average pooling), so it reaches
``C`` as a constant ``c[k]``, which this module computes by running those very ops on one sample
whose channels hold the bias. ``C`` may read the channels through a flatten (``N x C x H x W`` to
``N x CHW``, then a Linear): channel ``k`` is then a block of ``H * W`` columns. Then:

- ``c[k] == 0``: ``C`` multiplies a zero; the channel can go, whatever ``C`` is;
- ``c[k] != 0``: ``C`` adds ``c[k] * sum(C.weight[:, k])`` to every output; that is folded into
  ``C``'s bias when ``C`` is a Linear or an unpadded convolution (with padding the border sees
  zeros instead, so such channels stay).

Removing a channel drops it from ``P`` (weight rows and bias), from every BatchNorm on the way
(its four vectors) and from ``C`` (input columns). Only straight chains are handled: every
intermediate has one user, ``P`` and ``C`` are ungrouped, a Linear ``P`` has 2-D output, and
at least one channel survives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx

from graphopt.ir import Graph
from graphopt.op_kinds import op_kind
from graphopt.passes._layers import CONV_KINDS, Layer, batch_norm_output, fetch_attr, layer_of, only_user

PER_CHANNEL = frozenset(
    {"relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "leaky_relu", "identity", "dropout", "contiguous"}
)
#: Ops that keep a spatially constant channel constant (so it can still be folded downstream).
SPATIAL = frozenset({"max_pool2d", "adaptive_avg_pool2d"})
_SIZE_ATTRIBUTES = {"out": ("out_channels", "out_features", "num_features"), "in": ("in_channels", "in_features")}


@dataclass
class Chain:
    """What lies between a producer and its consumer: per-channel nodes, BatchNorms, flatten block."""

    steps: list[fx.Node]
    norms: list[Layer]
    consumer: Layer | None
    block: int = 1  # consumer columns per channel (after a flatten of C x H x W)


def _weighted(layer: Layer | None) -> bool:
    return (
        layer is not None
        and layer.kind in CONV_KINDS | {"linear"}
        and layer.groups == 1
        and layer.is_constant("weight")
        and layer.is_constant("bias")
    )


def _flattens_channels(graph: Graph, node: fx.Node) -> int | None:
    """For ``N x C x *spatial -> N x (C * S)`` (flatten or reshape), the block size S; else None."""
    before, after = graph.info(node.args[0]).shape, graph.info(node).shape  # type: ignore[arg-type]
    if before is None or after is None or len(before) < 3:
        return None
    block = math.prod(before[2:])
    return block if tuple(after) == (before[0], before[1] * block) else None


def _chain(graph: Graph, producer: fx.Node) -> Chain | None:
    """Follow ``producer``'s single users through per-channel ops to the layer that consumes them."""
    chain = Chain(steps=[], norms=[], consumer=None)
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
            chain.norms.append(norm)
            chain.steps += [user] if output is user else [user, output]
            current = output
        elif kind in PER_CHANNEL or (kind in SPATIAL and op_kind(graph.module, producer) in CONV_KINDS):
            chain.steps.append(user)
            current = user
        elif kind in ("flatten", "reshape") and chain.block == 1 and (block := _flattens_channels(graph, user)):
            chain.block = block
            current = user
        else:
            consumer = layer_of(graph.module, user)
            if consumer is None or not _weighted(consumer) or (chain.block > 1 and consumer.kind != "linear"):
                return None
            chain.consumer = consumer
            return chain
    return None


def _reaching_values(graph: Graph, producer: Layer, steps: list[fx.Node]) -> torch.Tensor:
    """The constant each channel reaches the consumer with when its weights are zero.

    Runs the chain's own ops on one sample whose channels hold the producer's bias everywhere.
    """
    weight, bias = producer.get("weight"), producer.get("bias")
    assert weight is not None
    channels = weight.shape[0]
    start = bias.detach() if bias is not None else torch.zeros(channels, dtype=weight.dtype)
    shape = graph.info(producer.node).shape or (1, channels)
    sample = start.reshape(1, channels, *([1] * (len(shape) - 2))).expand(1, *shape[1:]).contiguous()
    interpreter = fx.Interpreter(graph.module)
    interpreter.env[producer.node] = sample
    with torch.no_grad():
        for step in steps:
            for source in step.all_input_nodes:
                if source not in interpreter.env and source.op == "get_attr":
                    interpreter.env[source] = fetch_attr(graph.module, str(source.target))
            interpreter.env[step] = interpreter.run_node(step)
    final = interpreter.env[steps[-1]] if steps else sample
    return final.reshape(1, channels, -1)[0, :, 0]


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


def _remove(producer: Layer, chain: Chain, keep: torch.Tensor, constants: torch.Tensor) -> None:
    """Drop the channels ``~keep``, folding their ``constants`` into the consumer's bias."""
    consumer, norms = chain.consumer, chain.norms
    assert consumer is not None
    consumer_weight = consumer.get("weight")
    assert consumer_weight is not None
    columns = keep.repeat_interleave(chain.block)  # a flattened channel owns ``block`` columns
    if constants.any():
        gone = ~keep
        gone_columns = consumer_weight[:, ~columns].double()
        extra = gone_columns.reshape(consumer_weight.shape[0], int(gone.sum()), -1).sum(2)
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
    consumer.set("weight", consumer_weight[:, columns])
    _resize(consumer, "in", int(columns.sum()))


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
        chain = _chain(graph, node) if dead.any() and not dead.all() else None
        if chain is None or chain.consumer is None:
            continue
        if producer.kind == "linear" and len(graph.info(node).shape or ()) != 2:
            continue  # features are the last axis: per-channel ops would index another one
        reaching = _reaching_values(graph, producer, chain.steps)
        removable = dead & ((reaching == 0) | _absorbs_constants(chain.consumer))
        if not removable.any() or removable.all():
            continue
        _remove(producer, chain, ~removable, torch.where(removable, reaching, torch.zeros_like(reaching)))
        removed.append(f"{node.name}: {int(removable.sum())} of {removable.numel()} channels")
    return removed
