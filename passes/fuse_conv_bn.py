"""Fold eval-mode BatchNorm into the Conv or Linear that feeds it.

In eval mode BatchNorm is an affine map per channel: ``y = (z - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``. When ``z = W x + b`` comes from a convolution or linear layer,
``y = (W * s) x + ((b - mean) * s + beta)``: scaling each output channel's weights by ``s`` and
rewriting the bias gives the same function with one op less. The new tensors are computed in
float64 and cast back, so the folded layer differs from eager only by float32 rounding.

Conditions: the layer's only user is the BatchNorm, its weights are compile-time constants
(module attributes or ``get_attr``), it is called once, and for Linear the output is 2-D (the
BatchNorm1d channel axis is then the feature axis). A BatchNorm in training mode normalizes with
batch statistics, which folding would silently replace: the pass refuses it with an error.

A BatchNorm with nothing to fold into (it follows a pooling, an add, the input) becomes
``x * scale + shift`` with constant per-channel vectors: an elementwise op the fusion pass can put
in a group, with no batch-norm op left to lower.
Handles both spellings: ``nn.Conv2d``/``nn.BatchNorm2d`` modules and the aten overloads of
``torch.export`` (``aten.conv2d``, ``aten.linear``, ``aten.batch_norm``,
``aten._native_batch_norm_legit_no_training``).

It is a loop rather than a rule of graphopt/rewrite.py for two reasons the engine does not model:
the aten form returns a tuple whose ``getitem`` users, not the BatchNorm node, are what gets
replaced; and a BatchNorm in training mode must stop the pass with an error, not be skipped.
"""

from __future__ import annotations

import torch

from graphopt.errors import GraphoptError
from graphopt.ir import Graph
from graphopt.metadata import info, user_source
from graphopt.pass_api import PassResult, on_node, register_pass
from graphopt.passes._layers import (
    CONV_KINDS,
    Layer,
    batch_norm_eps,
    batch_norm_output,
    batch_norm_training,
    emit,
    insert_constant,
    layer_of,
    remove_dead_nodes,
    remove_unused_attributes,
    unused_attributes,
)


def _foldable_producer(graph: Graph, bn: Layer) -> Layer | None:
    producer = bn.input
    if not isinstance(producer, torch.fx.Node) or len(producer.users) != 1:
        return None
    layer = layer_of(graph.module, producer)
    if layer is None or layer.kind not in CONV_KINDS | {"linear"}:
        return None
    if not (layer.is_constant("weight") and layer.is_constant("bias")):
        return None
    if layer.kind == "linear" and len(info(producer).shape or ()) != 2:
        return None
    return layer


def _scale_and_shift(bn: Layer) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm in eval mode as ``y = z * scale + shift`` (float64)."""
    gamma, beta = bn.get("weight"), bn.get("bias")
    mean, var = bn.get("running_mean"), bn.get("running_var")
    assert mean is not None and var is not None
    scale = (gamma.double() if gamma is not None else 1.0) / torch.sqrt(var.double() + batch_norm_eps(bn))
    shift = (beta.double() if beta is not None else 0.0) - mean.double() * scale
    return scale, shift


def to_affine(graph: Graph, bn: Layer, output: torch.fx.Node) -> None:
    """Replace a BatchNorm with nothing to fold into by ``x * scale + shift`` on constant vectors."""
    scale, shift = _scale_and_shift(bn)
    rank = len(info(bn.node).shape or ())  # the BN was annotated; its input may be a node made just now
    view = (-1,) + (1,) * max(rank - 2, 0)
    dtype = bn.get("running_mean").dtype  # type: ignore[union-attr]
    constants = [
        insert_constant(graph.module, t.reshape(view).to(dtype), f"{bn.node.name}_{n}", before=bn.node)
        for t, n in ((scale, "scale"), (shift, "shift"))
    ]
    scaled = emit(graph, bn.node, "mul", bn.input, constants[0])
    output.replace_all_uses_with(emit(graph, bn.node, "add", scaled, constants[1]))


def fold_batch_norm(layer: Layer, bn: Layer) -> None:
    """Rewrite ``layer``'s weight and bias so it computes ``bn(layer(x))``."""
    weight = layer.get("weight")
    assert weight is not None
    bias, mean = layer.get("bias"), bn.get("running_mean")
    assert mean is not None
    scale, shift = _scale_and_shift(bn)
    old_bias = bias.double() if bias is not None else torch.zeros_like(mean, dtype=torch.float64)
    new_weight = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    new_bias = old_bias * scale + shift
    layer.set("weight", new_weight.to(weight.dtype))
    layer.set("bias", new_bias.to(weight.dtype))


@register_pass(
    "fuse_conv_bn", requires=("eval_mode",), reports=("folded", "to_affine", "removed_nodes", "removed_weights")
)
def fuse_conv_bn(graph: Graph) -> PassResult:
    """Fold eval-mode BatchNorm into the preceding Conv/Linear (weights and bias rewritten)."""
    module = graph.module
    already_unused = unused_attributes(module)
    folded: list[str] = []
    affine: list[str] = []
    for node in list(module.graph.nodes):
        bn = layer_of(module, node)
        if bn is None or bn.kind != "batch_norm":
            continue
        if batch_norm_training(bn):
            raise GraphoptError(
                "BatchNorm is in training mode (it normalizes with batch statistics); "
                "call model.eval() before optimizing so it can be folded",
                node=node.name,
                source=user_source(node),
            )
        layer, output = _foldable_producer(graph, bn), batch_norm_output(bn)
        constant = all(bn.is_constant(role) for role in ("weight", "bias", "running_mean", "running_var"))
        if output is None or not constant:
            continue
        with on_node(node):
            if layer is not None:
                fold_batch_norm(layer, bn)
                output.replace_all_uses_with(layer.node)
                folded.append(f"{node.name} -> {layer.node.name}")
            else:
                to_affine(graph, bn, output)
                affine.append(node.name)
    removed = remove_dead_nodes(module) if folded or affine else []
    freed = remove_unused_attributes(module, spare=already_unused)
    details = {"folded": folded, "to_affine": affine, "removed_nodes": removed, "removed_weights": freed}
    return PassResult(graph, changed=bool(folded or affine), details=details)
