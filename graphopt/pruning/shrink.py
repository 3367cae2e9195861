"""Remove chosen channels physically, or (for checking) zero what reads them.

``shrink`` slices every layer a removed element touches: weight rows, bias and BatchNorm vectors
on the ``out`` side, weight columns on the ``in`` side (for a grouped convolution the column
within each group; for a depthwise one the group count drops). The result holds smaller tensors,
not masks, so it runs, trains and compiles like any captured graph.

``mask`` keeps every tensor's size and zeroes, in each Conv/Linear, the weight columns that read
a removed channel. A removed channel then influences nothing (the analysis only lets channels
through ops that keep them apart), so the masked graph is the reference the shrunk one must equal.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from graphopt.ir import Graph
from graphopt.passes._layers import _GROUPS_SLOT, Layer, _op_name, remove_unused_attributes
from graphopt.pruning.attention import resize_reshapes
from graphopt.pruning.dependency import DependencyAnalysis, LayerUse

_SIZE_ATTRIBUTES = {"out": ("out_channels", "out_features", "num_features"), "in": ("in_channels", "in_features")}


def _assign(layer: Layer, role: str, tensor: torch.Tensor) -> None:
    """Rebind ``role``; a module parameter stays a trainable ``nn.Parameter`` (fine-tuning needs it)."""
    if layer.submodule is None:
        old = layer.get(role)
        layer.set(role, tensor)
        layer.get(role).requires_grad_(bool(getattr(old, "requires_grad", True)))  # type: ignore[union-attr]
        return
    old = getattr(layer.submodule, role)
    if role in layer.submodule._buffers:
        layer.submodule._buffers[role] = tensor.detach().clone()
    else:
        requires_grad = bool(getattr(old, "requires_grad", True))
        setattr(layer.submodule, role, nn.Parameter(tensor.detach().clone(), requires_grad=requires_grad))


def _resize(layer: Layer, side: str, size: int) -> None:
    if layer.submodule is not None:
        for attribute in _SIZE_ATTRIBUTES[side]:
            if hasattr(layer.submodule, attribute):
                setattr(layer.submodule, attribute, size)


def _set_groups(layer: Layer, groups: int) -> None:
    if layer.submodule is not None:
        layer.submodule.groups = groups  # type: ignore[assignment]
        return
    node = layer.node
    if "groups" in node.kwargs:
        node.update_kwarg("groups", groups)
        return
    position = _GROUPS_SLOT.get(_op_name(node), 6)
    args = list(node.args)
    defaults: dict[int, Any] = {2: None, 3: 1, 4: 0, 5: 1}
    while len(args) <= position:
        args.append(defaults.get(len(args)))
    args[position] = groups
    node.args = tuple(args)


def _masks(analysis: DependencyAnalysis, use: LayerUse, removed: set[int]) -> tuple[Any, Any]:
    out_keep = analysis.keep_mask(use.output.ids, removed) if use.output is not None else None
    in_keep = analysis.keep_mask(use.input.ids, removed) if use.input is not None else None
    return out_keep, in_keep


def shrink(analysis: DependencyAnalysis, removed: set[int]) -> Graph:
    """Remove the units ``removed`` (root element ids) from the analysed graph, in place; returns it."""
    graph = analysis.graph
    for use in analysis.uses:
        out_keep, in_keep = _masks(analysis, use, removed)
        layer = use.layer
        if layer.kind == "batch_norm":
            if out_keep is None or bool(out_keep.all()):
                continue
            for role in ("weight", "bias", "running_mean", "running_var"):
                tensor = layer.get(role)
                if tensor is not None:
                    _assign(layer, role, tensor[out_keep])
            _resize(layer, "out", int(out_keep.sum()))
            continue
        weight = layer.get("weight")
        assert weight is not None
        new = weight
        if out_keep is not None and not bool(out_keep.all()):
            new = new[out_keep]
            bias = layer.get("bias")
            if bias is not None:
                _assign(layer, "bias", bias[out_keep])
            _resize(layer, "out", int(out_keep.sum()))
        if in_keep is not None and not bool(in_keep.all()):
            per_group = int(weight.shape[1])
            if use.groups > 1 and per_group == 1:  # depthwise: whole groups went with their inputs
                _set_groups(layer, int(in_keep.sum()))
            else:
                new = new[:, in_keep[:per_group]]
            _resize(layer, "in", int(in_keep.sum()))
        if new is not weight:
            _assign(layer, "weight", new)
    for node, parts in analysis.splits:
        _resize_split(analysis, node, parts, removed)
    resize_reshapes(analysis, removed)
    _free_replaced(graph.module)
    graph.refresh()
    return graph


def _free_replaced(module: fx.GraphModule) -> None:
    """Erase the ``get_attr`` nodes left reading the tensors just replaced, then free those tensors.

    In the function/aten spelling (``torch.export`` captures) ``Layer.set`` adds the smaller tensor
    beside the old one; without this the graph would hold both and count more parameters than before.
    """
    for node in list(module.graph.nodes):
        if node.op == "get_attr" and not node.users:
            module.graph.erase_node(node)
    remove_unused_attributes(module)


def _resize_split(analysis: DependencyAnalysis, node: fx.Node, parts: list[list[int]], removed: set[int]) -> None:
    """Rewrite ``split``'s sizes to the channels each part keeps (equal parts stay one int)."""
    kept = [int(analysis.keep_mask(ids, removed).sum()) for ids in parts]
    args = list(node.args)
    args[1] = kept if isinstance(args[1], (list, tuple)) else kept[0]
    node.args = tuple(args)


def mask(analysis: DependencyAnalysis, removed: set[int]) -> Graph:
    """Zero the weight columns that read the units ``removed``, in place; sizes stay. Returns the graph."""
    for use in analysis.uses:
        if use.layer.kind == "batch_norm" or use.input is None:
            continue
        in_keep = analysis.keep_mask(use.input.ids, removed)
        if bool(in_keep.all()):
            continue
        weight = use.layer.get("weight")
        assert weight is not None
        zeroed = weight.detach().clone()
        per_group = int(weight.shape[1])
        if use.groups > 1 and per_group == 1:
            rows = torch.repeat_interleave(~in_keep, weight.shape[0] // use.groups)
            zeroed[rows] = 0
        else:
            zeroed[:, ~in_keep[:per_group]] = 0
        _assign(use.layer, "weight", zeroed)
    analysis.graph.refresh()
    return analysis.graph
