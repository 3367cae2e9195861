"""The graph surgery quantization passes share: which nodes to quantize, observers, weight rewrites.

A quantizable *site* is a linear, conv2d or matmul node. Its weight (for linear/conv2d, and for a
matmul whose right operand is a constant, as ``pretranspose_weights`` leaves Linear) becomes an
int8 buffer with float32 per-output-channel scales, read back through ``dequantize_per_channel``;
its activation inputs are wrapped by whatever the calling pass chooses (static QDQ pairs or a
dynamic fake-quantize). The node keeps its name, so skip lists and reports speak the user's names,
and its fusion-group marks, so a fused conv+relu stays one group with QDQ at its boundary.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import fx, nn

import graphopt.qdq_ops  # noqa: F401  (registers torch.ops.graphopt.*)
from graphopt.calibration import Observer, quantize_weight, weight_scales
from graphopt.ir import Graph
from graphopt.metadata import info
from graphopt.op_kinds import op_kind

QUANTIZABLE = ("linear", "conv2d", "matmul")
_LINEAR_FUNCTIONS = (F.linear, torch.ops.aten.linear.default)
_CONV_FUNCTIONS = (F.conv2d, torch.ops.aten.conv2d.default)
_MATMUL_FUNCTIONS = (
    torch.matmul,
    operator.matmul,
    torch.ops.aten.matmul.default,
    torch.bmm,
    torch.ops.aten.bmm.default,
    torch.ops.aten.mm.default,
)


@dataclass
class Site:
    """One node to quantize: its kind and the activation nodes feeding it."""

    node: fx.Node
    kind: str
    activations: list[fx.Node] = field(default_factory=list)
    layer: nn.Module | None = None  #: the float nn.Linear/nn.Conv2d a call_module site calls
    constant_weight: bool = False  #: a matmul whose right operand is a [K, N] constant (a pretransposed Linear)


class QuantizedWeights(nn.Module):
    """Holds a quantized layer's buffers: ``weight_int8``, ``weight_scale`` (float32 per channel), ``bias``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, per_channel: bool, axis: int = 0) -> None:
        super().__init__()
        channels_first = weight.transpose(0, axis)
        scales = weight_scales(channels_first, per_channel)
        self.register_buffer("weight_int8", quantize_weight(channels_first, scales).transpose(0, axis).contiguous())
        self.register_buffer("weight_scale", scales)
        self.register_buffer("bias", None if bias is None else bias.detach().clone().float())


def _skip_matches(module: fx.GraphModule, node: fx.Node, skip: Iterable[str | type]) -> bool:
    # a Linear that pretranspose_weights turned into a matmul still answers to its own name
    names = {node.name, str(node.target), info(node).module_path, node.meta.get("pretransposed_from", "")}
    submodule = module.get_submodule(str(node.target)) if node.op == "call_module" else None
    for entry in skip:
        if isinstance(entry, type):
            if submodule is not None and isinstance(submodule, entry):
                return True
            continue
        if submodule is not None and type(submodule).__name__ == entry:
            return True
        if any(name and fnmatch.fnmatchcase(name, entry) for name in names):
            return True
    return False


def _site(module: fx.GraphModule, node: fx.Node, kinds: Sequence[str]) -> Site | None:
    kind = op_kind(module, node)
    if kind not in kinds or not node.args or not isinstance(node.args[0], fx.Node):
        return None
    if node.op == "call_module":
        submodule = module.get_submodule(str(node.target))
        if isinstance(submodule, nn.Linear) or (isinstance(submodule, nn.Conv2d) and submodule.padding_mode == "zeros"):
            return Site(node, kind, [node.args[0]], submodule)
        return None
    if node.op != "call_function":
        return None
    weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    if node.target in _LINEAR_FUNCTIONS + _CONV_FUNCTIONS and isinstance(weight, fx.Node) and weight.op == "get_attr":
        return Site(node, kind, [node.args[0]])
    if node.target in _MATMUL_FUNCTIONS and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args):
        right = node.args[1]
        assert isinstance(right, fx.Node)  # checked just above
        if right.op == "get_attr" and getattr_path(module, str(right.target)).dim() == 2:
            return Site(node, kind, [node.args[0]], constant_weight=True)  # type: ignore[list-item]
        return Site(node, kind, list(node.args))  # type: ignore[arg-type]
    return None


def find_sites(
    graph: Graph, *, kinds: Sequence[str] = QUANTIZABLE, skip: Iterable[str | type] = ()
) -> tuple[list[Site], list[str]]:
    """Quantizable nodes in graph order, and the names of those the skip list keeps in float."""
    sites, skipped = [], []
    skip = list(skip)
    for node in graph.compute_nodes():
        site = _site(graph.module, node, kinds)
        if site is None:
            continue
        if _skip_matches(graph.module, node, skip):
            skipped.append(node.name)
        else:
            sites.append(site)
    return sites, skipped


def observe(graph: Graph, sites: list[Site], batches: Iterable[tuple[torch.Tensor, ...]]) -> dict[str, Observer]:
    """Run ``batches`` through a copy of the graph with an observer on every site's activations.

    Returns the observers by the name of the activation node they watched.
    """
    working = graph.copy()
    observers: dict[str, Observer] = {}
    watchers: dict[str, fx.Node] = {}
    for site in sites:
        node = working.node(site.node.name)
        for source in [working.node(a.name) for a in site.activations]:
            if source.name not in watchers:
                observers[source.name] = Observer()
                attribute = f"_graphopt_observer_{len(observers)}"
                working.module.add_module(attribute, observers[source.name])
                with working.module.graph.inserting_after(source):
                    watchers[source.name] = working.module.graph.call_module(attribute, (source,))
            node.replace_input_with(source, watchers[source.name])
    working.module.recompile()
    with torch.no_grad():
        for batch in batches:
            working.module(*batch)
    return observers


def _attr(graph: fx.Graph, target: str, name: str) -> fx.Node:
    node = graph.get_attr(target)
    node.name = name
    return node


def _rewrite_constant_matmul(graph: Graph, site: Site, per_channel: bool) -> None:
    """``matmul(x, W_t)`` with a constant ``[K, N]`` W_t: int8 W_t with one scale per column (output channel)."""
    module, node = graph.module, site.node
    constant = node.args[1]
    assert isinstance(constant, fx.Node)  # Site.constant_weight: a get_attr node
    holder_name = f"{node.name}_quantized"
    module.add_module(
        holder_name, QuantizedWeights(getattr_path(module, str(constant.target)), None, per_channel, axis=1)
    )
    with module.graph.inserting_before(node):
        q_weight = _attr(module.graph, f"{holder_name}.weight_int8", f"{node.name}_weight_int8")
        scales = _attr(module.graph, f"{holder_name}.weight_scale", f"{node.name}_weight_scale")
        weight = module.graph.call_function(torch.ops.graphopt.dequantize_per_channel.default, (q_weight, scales, 1))
        weight.name = f"{node.name}_weight"
    node.replace_input_with(constant, weight)
    if not constant.users:
        module.graph.erase_node(constant)
        _delete_attr(module, str(constant.target))


def rewrite_weights(graph: Graph, site: Site, *, per_channel: bool) -> None:
    """Turn ``site``'s float weight into int8 + scales read through ``dequantize_per_channel``.

    A linear/conv2d node becomes a plain ``F.linear``/``F.conv2d`` call; a matmul of two
    activations has no weight and is left as it is.
    """
    if site.kind == "matmul":
        if site.constant_weight:
            _rewrite_constant_matmul(graph, site, per_channel)
        return
    module, node = graph.module, site.node
    fx_graph = module.graph
    if node.op == "call_module":
        target = holder_name = str(node.target)
        layer = site.layer
        assert layer is not None
        if not isinstance(module.get_submodule(target), QuantizedWeights):  # a layer called twice is quantized once
            module.set_submodule(
                target,
                QuantizedWeights(cast(torch.Tensor, layer.weight), cast(torch.Tensor | None, layer.bias), per_channel),
            )
        function: Callable = F.linear if isinstance(layer, nn.Linear) else F.conv2d
        extra: tuple[Any, ...] = (
            () if function is F.linear else (layer.stride, layer.padding, layer.dilation, layer.groups)
        )
        x = node.args[0]
    else:
        weight_node = node.args[1]
        target = str(weight_node.target)  # type: ignore[union-attr]
        weight = (
            module.get_parameter(target) if target in dict(module.named_parameters()) else getattr_path(module, target)
        )
        bias_node = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        bias = (
            getattr_path(module, str(bias_node.target))
            if isinstance(bias_node, fx.Node) and bias_node.op == "get_attr"
            else None
        )
        if isinstance(bias_node, fx.Node) and bias is None:
            return  # a computed bias: leave this node in float
        holder_name = f"{node.name}_quantized"
        module.add_module(holder_name, QuantizedWeights(weight, bias, per_channel))
        function = F.linear if site.kind == "linear" else F.conv2d
        extra = tuple(node.args[3:])
        x = node.args[0]
    with fx_graph.inserting_before(node):
        q_weight = _attr(fx_graph, f"{holder_name}.weight_int8", f"{node.name}_weight_int8")
        scales = _attr(fx_graph, f"{holder_name}.weight_scale", f"{node.name}_weight_scale")
        weight_fp = fx_graph.call_function(torch.ops.graphopt.dequantize_per_channel.default, (q_weight, scales, 0))
        weight_fp.name = f"{node.name}_weight"
        has_bias = getattr_path(module, f"{holder_name}.bias") is not None
        bias_fp = _attr(fx_graph, f"{holder_name}.bias", f"{node.name}_bias") if has_bias else None
    replaced = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node) and a.op == "get_attr"]
    node.op, node.target = "call_function", function
    node.args, node.kwargs = (x, weight_fp, bias_fp, *extra), {}
    for attribute in replaced:  # the float weight and bias of a call_function site, if nothing else reads them
        if not attribute.users:
            fx_graph.erase_node(attribute)
            _delete_attr(module, str(attribute.target))


def getattr_path(module: nn.Module, target: str) -> Any:
    """The attribute at dotted ``target`` (a tensor, or None for a layer's absent bias)."""
    value: object = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _delete_attr(module: nn.Module, target: str) -> None:
    parent, _, name = target.rpartition(".")
    owner = module.get_submodule(parent) if parent else module
    if name in owner._parameters:
        del owner._parameters[name]
    elif name in owner._buffers:
        del owner._buffers[name]
