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
Handles both spellings: ``nn.Conv2d``/``nn.BatchNorm2d`` modules and the aten overloads of
``torch.export`` (``aten.conv2d``, ``aten.linear``, ``aten.batch_norm``,
``aten._native_batch_norm_legit_no_training``).
"""

from __future__ import annotations

import torch
from graphopt.passes._layers import (
    CONV_KINDS,
    Layer,
    batch_norm_eps,
    batch_norm_output,
    batch_norm_training,
    layer_of,
    remove_dead_nodes,
    remove_unused_attributes,
    unused_attributes,
)

from graphopt.errors import GraphoptError
from graphopt.ir import Graph
from graphopt.metadata import info, user_source
from graphopt.pass_api import PassResult, on_node, register_pass


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
    if not all(bn.is_constant(role) for role in ("weight", "bias", "running_mean", "running_var")):
        return None
    return layer


def fold_batch_norm(layer: Layer, bn: Layer) -> None:
    """Rewrite ``layer``'s weight and bias so it computes ``bn(layer(x))``."""
    weight = layer.get("weight")
    assert weight is not None
    bias, gamma, beta = layer.get("bias"), bn.get("weight"), bn.get("bias")
    mean, var = bn.get("running_mean"), bn.get("running_var")
    assert mean is not None and var is not None
    scale = (gamma.double() if gamma is not None else 1.0) / torch.sqrt(var.double() + batch_norm_eps(bn))
    shift = beta.double() if beta is not None else 0.0
    old_bias = bias.double() if bias is not None else torch.zeros_like(mean, dtype=torch.float64)
    new_weight = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    new_bias = (old_bias - mean.double()) * scale + shift
    layer.set("weight", new_weight.to(weight.dtype))
    layer.set("bias", new_bias.to(weight.dtype))


@register_pass("fuse_conv_bn", requires=("eval_mode",), reports=("folded", "removed_nodes", "removed_weights"))
def fuse_conv_bn(graph: Graph) -> PassResult:
    """Fold eval-mode BatchNorm into the preceding Conv/Linear (weights and bias rewritten)."""
    module = graph.module
    already_unused = unused_attributes(module)
    folded = []
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
        if layer is None or output is None:
            continue
        with on_node(node):
            fold_batch_norm(layer, bn)
            output.replace_all_uses_with(layer.node)
        folded.append(f"{node.name} -> {layer.node.name}")
    removed = remove_dead_nodes(module) if folded else []
    freed = remove_unused_attributes(module, spare=already_unused)
    details = {"folded": folded, "removed_nodes": removed, "removed_weights": freed}
    return PassResult(graph, changed=bool(folded), details=details)
