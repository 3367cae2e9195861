"""Horizontal fusion: members of one architecture, on the same input, run as one wider model.

The usual ensemble is one architecture trained with several seeds. Its members' corresponding
layers become one layer (NetFuse, 2020; TensorRT does this only for layers sharing an input):

- the first convolution (all members read the same input) becomes one convolution with the
  members' output channels concatenated; later convolutions become one grouped convolution
  (``groups = members x groups``), so member ``i`` keeps reading only its own channels;
- BatchNorm concatenates its per-channel statistics; activations and pooling, which treat each
  channel alike, are applied once to the wide tensor;
- ``Flatten`` turns the channel-stacked ``B x (N*C) x H x W`` into member-major ``N x B x (C*H*W)``,
  and each Linear becomes one batched matmul (``N x B x K @ N x K x O``); a Linear reading the
  shared input (an MLP) is one broadcast matmul;
- the result is the members' outputs stacked (``N x B x O``), which the combination reads.

Members are matched node by node: same ops in the same order, same layer types and
configurations, arguments at the same positions. Members that match no other one, or whose graph
holds a node these rules do not cover, are left as they are (the report says which node stopped
it). Everything else in the ensemble (other architectures, merged backbones) is unaffected.

Wider is not always faster: a wide layer's activations are the members' together, and once they
leave the cache the memory traffic costs more than the dispatch saved. Four digits CNNs fused
horizontally ran 2.3x faster than four separate artifacts at batch 1 (200 KB of activations per
layer) and 0.7x at batch 64 (13 MB; benchmarks/results/ensemble.md). ``max_bytes`` leaves a group
unfused when its widest activation would exceed it; ``fuse_models(horizontal="auto")`` passes
``WORKING_SET_BYTES``, a typical per-core L2 cache.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from graphopt.ir import Graph
from graphopt.metadata import info

MEMBER = "ensemble_member"  #: node.meta key: index of the member a node was copied from

SHARED, CHANNELS, MEMBERS = "shared", "channels", "members"  # layouts of a wide value

#: Layers applied to each element alike: applied once to a wide tensor of either layout.
_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.LeakyReLU,
    nn.Identity,
    nn.Dropout,
)
#: Layers that treat every channel alike: applied once to the channel-stacked tensor.
_CHANNELWISE_MODULES = (*_ELEMENTWISE_MODULES, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_ELEMENTWISE_FUNCTIONS: set[Any] = {torch.relu, F.relu, torch.sigmoid, torch.tanh, F.gelu, F.silu}
_ADDS: set[Any] = {operator.add, torch.add}

#: ``horizontal="auto"``'s bound on a fused layer's activation bytes (1 MiB: Zen 4's L2 per core,
#: half a Sapphire Rapids core's).
WORKING_SET_BYTES = 1 << 20


class _NotFusableError(Exception):
    pass


def _signature(module: fx.GraphModule, node: fx.Node, position: dict[fx.Node, int]) -> Any:
    """What must agree between corresponding nodes of two members."""

    def arg(value: Any) -> Any:
        if isinstance(value, fx.Node):
            if value.op == "placeholder":
                return ("input", value.name)
            return ("node", position[value])
        if isinstance(value, (list, tuple)):
            return tuple(arg(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((k, arg(v)) for k, v in value.items()))
        return ("const", repr(value))

    if node.op == "call_module":
        layer = module.get_submodule(str(node.target))
        what: Any = (type(layer).__qualname__, layer.extra_repr(), layer.training)
    elif node.op == "get_attr":
        what = ("attr",)  # weights may differ; whether a get_attr can be widened is checked later
    else:
        what = node.target
    return (node.op, what, arg(node.args), arg(dict(node.kwargs)))


def _reads_other_members(nodes: list[fx.Node], position: dict[fx.Node, int]) -> bool:
    foreign: list[fx.Node] = []

    def visit(value: fx.Node) -> fx.Node:
        if value.op != "placeholder" and value not in position:
            foreign.append(value)
        return value

    for node in nodes:
        fx.node.map_arg((node.args, node.kwargs), visit)
    return bool(foreign)


def _member_nodes(graph: Graph, count: int) -> list[list[fx.Node]]:
    nodes: list[list[fx.Node]] = [[] for _ in range(count)]
    for node in graph.module.graph.nodes:
        member = node.meta.get(MEMBER)
        if member is not None and node.op not in ("placeholder", "output"):
            nodes[member].append(node)
    return nodes


def _output_bytes(node: fx.Node) -> int:
    if node.op == "get_attr":
        return 0  # a weight, not an activation
    facts = info(node)
    return sum(
        math.prod(shape) * torch.empty((), dtype=getattr(torch, dtype)).element_size()
        for shape, dtype in zip(facts.shapes, facts.dtypes, strict=False)
        if hasattr(torch, dtype)
    )


def widest_activation(chains: list[list[fx.Node]]) -> int:
    """Bytes of the largest activation the fused chains would produce: at each position, the sum of
    the corresponding members' outputs (what one wide layer writes)."""
    return max((sum(_output_bytes(chain[k]) for chain in chains) for k in range(len(chains[0]))), default=0)


def fuse_horizontally(
    graph: Graph, member_outputs: list[Any], max_bytes: int | None = None
) -> tuple[fx.Node | None, list[str]]:
    """Fuse groups of matching members of ``graph`` (in place); returns a node holding every member's
    output stacked (member x output), or None when no group formed, and what was fused.

    ``max_bytes``: leave a group unfused when its widest activation would exceed this (see the
    module docstring); None fuses whatever matches."""
    count = len(member_outputs)
    per_member = _member_nodes(graph, count)
    signatures: dict[Any, list[int]] = {}
    for index, nodes in enumerate(per_member):
        output = member_outputs[index]
        if not isinstance(output, fx.Node) or output not in nodes or not nodes:
            continue
        position = {n: k for k, n in enumerate(nodes)}
        if _reads_other_members(nodes, position):
            continue  # part of it was merged with another member (a shared backbone)
        key = (tuple(_signature(graph.module, n, position) for n in nodes), position[output])
        signatures.setdefault(key, []).append(index)
    wide_outputs: dict[int, tuple[fx.Node, int]] = {}
    fused: list[str] = []
    for group, ((_, output_position), members) in enumerate(signatures.items()):
        if len(members) < 2:
            continue
        wide_bytes = widest_activation([per_member[i] for i in members])
        if max_bytes is not None and wide_bytes > max_bytes:
            graph.notes.append(
                f"horizontal fusion of members {members} skipped: one wide layer would write "
                f"{wide_bytes / 2**20:.1f} MiB of activations at this batch size, more than the "
                f"{max_bytes / 2**20:.1f} MiB that stay in cache (horizontal=True fuses anyway)"
            )
            continue
        try:
            widener = _Widener(graph, [per_member[i] for i in members], members, group)
            stacked, described = widener.run(output_position)
        except _NotFusableError as reason:
            graph.notes.append(f"horizontal fusion of members {members} skipped: {reason}")
            continue
        fused.extend(described)
        for slot, member in enumerate(members):
            wide_outputs[member] = (stacked, slot)
    if not wide_outputs:
        return None, []
    fx_graph = graph.module.graph
    output_node = graph.output_node()
    with fx_graph.inserting_before(output_node):
        stacked_nodes = {s for s, _ in wide_outputs.values()}
        if (
            len(wide_outputs) == count
            and len(stacked_nodes) == 1
            and all(wide_outputs[i][1] == i for i in range(count))
        ):
            result = next(iter(stacked_nodes))
        else:
            # a member merged whole into a fused one (equal weights) reads that member's slot
            by_output = {member_outputs[i]: wide_outputs[i] for i in wide_outputs}
            pieces = [
                fx_graph.call_function(
                    torch.select, (*by_output[member_outputs[i]][:1], 0, by_output[member_outputs[i]][1])
                )
                if member_outputs[i] in by_output
                else member_outputs[i]
                for i in range(count)
            ]
            result = fx_graph.call_function(torch.stack, (pieces, 0))
    output_node.args = (tuple(member_outputs),)  # unchanged until the combination replaces it
    return result, fused


class _Widener:
    """Builds the wide version of matched member chains, node by node."""

    def __init__(self, graph: Graph, chains: list[list[fx.Node]], members: list[int], group: int) -> None:
        self.members = list(members)
        self.graph = graph
        self.module = graph.module
        self.fx = graph.module.graph
        self.chains = chains
        self.n = len(chains)
        self.prefix = f"wide{group}"
        self.values: dict[int, tuple[fx.Node, str]] = {}
        self.described: list[str] = []

    def run(self, output_position: int) -> tuple[fx.Node, list[str]]:
        output = self.graph.output_node()
        with self.fx.inserting_before(output):
            try:
                for k, node in enumerate(self.chains[0]):
                    self.values[k] = self._widen(k, node)
                value, layout = self.values[output_position]
                stacked = self._to_members(value, layout, self.chains[0][output_position])
            except _NotFusableError:
                for node in reversed([n for n in self.fx.nodes if n.meta.get("wide_group") == self.prefix]):
                    self.fx.erase_node(node)
                raise
        return stacked, self.described

    # -- helpers ---------------------------------------------------------------------------------
    def _call(self, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> fx.Node:
        node = self.fx.call_function(function, args, kwargs or {})
        node.meta["wide_group"] = self.prefix
        node.meta["wide_members"] = self.members
        return node

    def _attr(self, name: str, tensor: torch.Tensor) -> fx.Node:
        target = f"{self.prefix}_{name}"
        self.module.register_buffer(target, tensor.detach().clone())
        node = self.fx.get_attr(target)
        node.meta["wide_group"] = self.prefix
        node.meta["wide_members"] = self.members
        return node

    def _layer(self, name: str, layer: nn.Module, args: tuple[Any, ...]) -> fx.Node:
        target = f"{self.prefix}_{name}"
        self.module.add_submodule(target, layer.eval())
        node = self.fx.call_module(target, args)
        node.meta["wide_group"] = self.prefix
        node.meta["wide_members"] = self.members
        return node

    def _input(self, value: Any) -> tuple[fx.Node, str]:
        if isinstance(value, fx.Node) and value.op == "placeholder":
            return value, SHARED
        if isinstance(value, fx.Node):
            k = next(i for i, n in enumerate(self.chains[0]) if n is value)
            return self.values[k]
        raise _NotFusableError(f"argument {value!r} is not a tensor of the chain")

    def _layers(self, k: int) -> list[nn.Module]:
        return [self.module.get_submodule(str(chain[k].target)) for chain in self.chains]

    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        shape = self.graph.info(node).shape
        if shape is None:
            raise _NotFusableError(f"node '{node.name}' has no recorded shape")
        return tuple(shape)

    def _to_members(self, value: fx.Node, layout: str, node: fx.Node) -> fx.Node:
        """A wide value as member-major ``N x (member's shape)``."""
        if layout == MEMBERS:
            return value
        if layout == CHANNELS:
            shape = self._shape(node)
            split = self._call(torch.reshape, (value, (-1, self.n, *shape[1:])))
            return self._call(torch.transpose, (split, 0, 1))
        raise _NotFusableError("the members' output is their shared input")

    # -- the rules -------------------------------------------------------------------------------
    def _widen(self, k: int, node: fx.Node) -> tuple[fx.Node, str]:
        if node.op == "call_module":
            return self._widen_module(k, node)
        if node.op == "call_function" and node.target in _ELEMENTWISE_FUNCTIONS:
            value, layout = self._input(node.args[0])
            if layout == SHARED or len(node.args) > 1 or node.kwargs:
                raise _NotFusableError(f"node '{node.name}' ({node.target})")
            return self._call(node.target, (value,)), layout
        if node.op == "call_function" and node.target in _ADDS and len(node.args) == 2 and not node.kwargs:
            (a, la), (b, lb) = self._input(node.args[0]), self._input(node.args[1])
            if la != lb or la == SHARED:
                raise _NotFusableError(f"node '{node.name}' adds values of different layouts")
            return self._call(operator.add, (a, b)), la
        if node.op == "call_function" and node.target is torch.flatten:
            value, layout = self._input(node.args[0])
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if start != 1 or end != -1 or layout != CHANNELS:
                raise _NotFusableError(f"node '{node.name}' (flatten from dim {start})")
            return self._flatten(value, node), MEMBERS
        raise _NotFusableError(f"node '{node.name}' ({node.op} {node.target}) has no horizontal rule")

    def _flatten(self, value: fx.Node, node: fx.Node) -> fx.Node:
        features = math.prod(self._shape(node)[1:])
        split = self._call(torch.reshape, (value, (-1, self.n, features)))
        return self._call(torch.transpose, (split, 0, 1))

    def _widen_module(self, k: int, node: fx.Node) -> tuple[fx.Node, str]:
        layers = self._layers(k)
        first = layers[0]
        if len(node.args) != 1 or node.kwargs:
            raise _NotFusableError(f"node '{node.name}' takes more than one input")
        value, layout = self._input(node.args[0])
        name = str(node.target).split(".", 1)[-1].replace(".", "_")
        if isinstance(first, nn.Conv2d):
            return self._conv(name, layers, value, layout), CHANNELS
        if isinstance(first, nn.BatchNorm2d) and layout == CHANNELS:
            return self._batch_norm(name, layers, value), CHANNELS
        if isinstance(first, nn.Linear) and layout in (SHARED, MEMBERS) and len(self._shape(node)) == 2:
            return self._linear(name, layers, value), MEMBERS
        if isinstance(first, nn.Flatten) and layout == CHANNELS and first.start_dim == 1 and first.end_dim == -1:
            self.described.append(f"{name} x{self.n}: flatten to member-major")
            return self._flatten(value, node), MEMBERS
        if isinstance(first, _CHANNELWISE_MODULES) and layout == CHANNELS:
            return self._layer(name, first, (value,)), CHANNELS
        if isinstance(first, _ELEMENTWISE_MODULES) and layout == MEMBERS:
            return self._layer(name, first, (value,)), MEMBERS
        raise _NotFusableError(f"node '{node.name}' ({type(first).__name__} on {layout} input) has no horizontal rule")

    def _conv(self, name: str, layers: list[nn.Module], value: fx.Node, layout: str) -> fx.Node:
        convs: list[nn.Conv2d] = layers  # type: ignore[assignment]
        first = convs[0]
        if first.padding_mode != "zeros" or layout == MEMBERS:
            raise _NotFusableError(f"conv '{name}' ({first.padding_mode} padding, {layout} input)")
        if layout == SHARED:
            if first.groups != 1:
                raise _NotFusableError(f"conv '{name}' reads the shared input with groups={first.groups}")
            in_channels, groups = first.in_channels, 1
            how = f"one conv2d {first.in_channels}->{self.n * first.out_channels} channels (shared input)"
        else:
            in_channels, groups = self.n * first.in_channels, self.n * first.groups
            how = f"one grouped conv2d groups={groups}"
        wide = nn.Conv2d(
            in_channels,
            self.n * first.out_channels,
            first.kernel_size,  # type: ignore[arg-type]
            stride=first.stride,  # type: ignore[arg-type]
            padding=first.padding,  # type: ignore[arg-type]
            dilation=first.dilation,  # type: ignore[arg-type]
            groups=groups,
            bias=first.bias is not None,
        )
        with torch.no_grad():
            wide.weight.copy_(torch.cat([c.weight for c in convs]))
            if wide.bias is not None:
                wide.bias.copy_(torch.cat([c.bias for c in convs]))  # type: ignore[misc]
        self.described.append(f"{name} x{self.n}: {how}")
        return self._layer(name, wide, (value,))

    def _batch_norm(self, name: str, layers: list[nn.Module], value: fx.Node) -> fx.Node:
        norms: list[nn.BatchNorm2d] = layers  # type: ignore[assignment]
        first = norms[0]
        if not first.track_running_stats or any(n.training for n in norms):
            raise _NotFusableError(f"batch norm '{name}' in training mode or without running statistics")
        wide = nn.BatchNorm2d(self.n * first.num_features, eps=first.eps, affine=first.affine)
        with torch.no_grad():
            for field in ("weight", "bias", "running_mean", "running_var"):
                target = getattr(wide, field)
                if target is not None:
                    target.copy_(torch.cat([getattr(n, field) for n in norms]))
        self.described.append(f"{name} x{self.n}: one batch_norm of {self.n * first.num_features} channels")
        return self._layer(name, wide, (value,))

    def _linear(self, name: str, layers: list[nn.Module], value: fx.Node) -> fx.Node:
        linears: list[nn.Linear] = layers  # type: ignore[assignment]
        weight = torch.stack([layer.weight.t() for layer in linears])  # N x K x O
        product = self._call(torch.matmul, (value, self._attr(f"{name}_weight", weight.contiguous())))
        self.described.append(f"{name} x{self.n}: one batched matmul {self.n}x{weight.shape[1]}x{weight.shape[2]}")
        if linears[0].bias is None:
            return product
        bias = torch.stack([layer.bias for layer in linears]).unsqueeze(1)  # N x 1 x O
        return self._call(torch.add, (product, self._attr(f"{name}_bias", bias)))
