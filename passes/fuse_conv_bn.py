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

Two rules of graphopt/rewrite.py do the work, one per spelling: the module form returns the tensor,
the aten form a tuple whose ``getitem(_, 0)`` is what gets replaced. A BatchNorm in training mode
is checked for before the rules run, since it must stop the pass with an error, not be skipped.
"""

from __future__ import annotations

import torch
from torch import fx

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
    remove_unused_attributes,
    unused_attributes,
)
from graphopt.rewrite import Lit, Match, Op, Rule, apply_rules


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


def to_affine(graph: Graph, bn: Layer) -> fx.Node:
    """``x * scale + shift`` on constant vectors: what a BatchNorm with nothing to fold into becomes."""
    scale, shift = _scale_and_shift(bn)
    rank = len(info(bn.node).shape or ())  # the BN was annotated; its input may be a node made just now
    view = (-1,) + (1,) * max(rank - 2, 0)
    dtype = bn.get("running_mean").dtype  # type: ignore[union-attr]
    constants = [
        insert_constant(graph.module, t.reshape(view).to(dtype), f"{bn.node.name}_{n}", before=bn.node)
        for t, n in ((scale, "scale"), (shift, "shift"))
    ]
    scaled = emit(graph, bn.node, "mul", bn.input, constants[0])
    return emit(graph, bn.node, "add", scaled, constants[1])


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


def _check_eval_mode(graph: Graph) -> None:
    for node in graph.module.graph.nodes:
        bn = layer_of(graph.module, node)
        if bn is not None and bn.kind == "batch_norm" and batch_norm_training(bn):
            raise GraphoptError(
                "BatchNorm is in training mode (it normalizes with batch statistics); "
                "call model.eval() before optimizing so it can be folded",
                node=node.name,
                source=user_source(node),
            )


def _constant_batch_norm(match: Match) -> Layer | None:
    """The matched BatchNorm, if its statistics and affine parameters are compile-time constants and
    ``match.root`` is the node carrying its normalized tensor."""
    bn = layer_of(match.module, match["bn"])
    if bn is None or batch_norm_output(bn) is not match.root:
        return None
    constant = all(bn.is_constant(role) for role in ("weight", "bias", "running_mean", "running_var"))
    return bn if constant else None


def _rules(folded: list[str], affine: list[str]) -> list[Rule]:
    def replace(match: Match) -> fx.Node:
        bn = _constant_batch_norm(match)
        assert bn is not None
        with on_node(bn.node):
            layer = _foldable_producer(match.graph, bn)
            if layer is None:
                affine.append(bn.node.name)
                return to_affine(match.graph, bn)
            fold_batch_norm(layer, bn)
            folded.append(f"{bn.node.name} -> {layer.node.name}")
            return layer.node

    def when(match: Match) -> bool:
        return _constant_batch_norm(match) is not None

    return [
        Rule("batch_norm(z) -> z' (module form)", Op("batch_norm", name="bn"), replace=replace, when=when),
        Rule(
            "getitem(batch_norm(z), 0) -> z' (aten form)",
            Op("getitem", Op("batch_norm", name="bn"), Lit(0)),
            replace=replace,
            when=when,
        ),
    ]


@register_pass(
    "fuse_conv_bn", requires=("eval_mode",), reports=("folded", "to_affine", "removed_nodes", "removed_weights")
)
def fuse_conv_bn(graph: Graph) -> PassResult:
    """Fold eval-mode BatchNorm into the preceding Conv/Linear (weights and bias rewritten)."""
    _check_eval_mode(graph)
    module = graph.module
    already_unused = unused_attributes(module)
    before = [node.name for node in module.graph.nodes]
    folded: list[str] = []
    affine: list[str] = []
    apply_rules(graph, _rules(folded, affine))
    after = {node.name for node in module.graph.nodes}
    removed = [name for name in before if name not in after]
    freed = remove_unused_attributes(module, spare=already_unused)
    details = {"folded": folded, "to_affine": affine, "removed_nodes": removed, "removed_weights": freed}
    return PassResult(graph, changed=bool(folded or affine), details=details)
