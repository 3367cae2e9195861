"""Dependency groups: the sets of channels that must be removed together.

Every tensor the analysis can follow gets a *channel map*: the axis that carries channels and, for
each position on that axis, the id of a channel element. A Conv/Linear creates fresh elements for
its output channels; ops that treat channels independently (BatchNorm, activations, pooling,
dropout) pass the map through; the rest tie elements together (a union-find over ids):

- ``a + b`` (and ``-``, ``*``, ``/``) of two followed tensors: position ``i`` of ``a`` and of ``b``
  are one element (a residual stream is one group through the whole stage);
- ``cat`` on the channel axis: the output's positions are the inputs' positions end to end;
  ``chunk``/``split`` into equal parts: position ``j`` of every part is one element (the parts
  stay equal); ``split`` into listed sizes: each part is its own slice (the sizes are rewritten);
- a grouped convolution reads input ``j`` of every group through the same weight column, so those
  are one element, and its output channel ``j`` of every group likewise (the groups stay equal);
  a depthwise one (one input channel per group) ties input channel ``k`` to the outputs of group
  ``k`` instead, so whole groups go;
- ``flatten`` of ``N x C x H x W`` to ``N x CHW`` gives channel ``c`` the ``H * W`` columns
  ``c*HW .. c*HW + HW - 1``, which a following Linear reads;
- a channel shuffle (``view(N, g, C/g, H, W)``, ``transpose(1, 2)``, ``reshape(N, C, H, W)``)
  ties position ``j`` of every block and permutes the map as the shuffle permutes channels.

Elements that reach an op the analysis does not know, a graph output, an ignored layer, or a
tensor the analysis does not follow (a model input, a constant of per-channel shape) are *fixed*,
and so is everything tied to them. What is left, grouped by the layers it touches, is the list of
``PruningGroup``s: removing any subset of a group's units, from every layer it names, leaves a
graph that runs and computes what the original would with those channels zeroed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from networkx.utils import UnionFind
from torch import fx

from graphopt.errors import InputError
from graphopt.ir import Graph
from graphopt.op_kinds import ELEMENTWISE, op_kind
from graphopt.passes._layers import CONV_KINDS, Layer, batch_norm_output, layer_of, only_user
from graphopt.pruning import attention

ELEMENTWISE_BINARY = frozenset({"add", "sub", "mul", "div"})
#: Ops that act on each channel alone (no parameters of channel size, no mixing).
PER_CHANNEL = (ELEMENTWISE - ELEMENTWISE_BINARY) | {"dropout", "identity", "contiguous", "cast"}
#: Ops that pool the spatial axes of ``N x C x *spatial``, channel by channel.
SPATIAL = frozenset({"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"})


@dataclass
class ChannelMap:
    """Which element each position of a tensor's channel axis holds; ``axis`` counts from the end (< 0)."""

    axis: int
    ids: list[int]


@dataclass
class LayerUse:
    """A Conv/Linear/BatchNorm node and the channel maps of its input and output (None: not followed)."""

    node: fx.Node
    layer: Layer
    input: ChannelMap | None
    output: ChannelMap | None
    #: for a grouped conv: input channels per group (its weight's dim 1) and the group count.
    groups: int = 1


@dataclass
class PruningGroup:
    """Channels that go together: ``units`` (each a set of coupled channels) across ``layers``.

    ``layers`` names each node the group touches with the side it is removed from: ``out`` (weight
    rows, bias, BatchNorm vectors) or ``in`` (weight columns of a consumer).
    """

    index: int
    layers: list[tuple[str, str]]
    units: list[int]  # root element ids, one per prunable unit
    unit_width: int = 1  # positions one unit covers in the widest tensor it appears in
    unit: str = "channels"  # what a unit is: channels, or attention heads (of unit_width channels each)

    @property
    def size(self) -> int:
        return len(self.units)

    def describe(self) -> str:
        outs = [name for name, side in self.layers if side == "out"]
        ins = [name for name, side in self.layers if side == "in"]
        return f"group {self.index}: {self.size} {self.unit}; out of {', '.join(outs)}; into {', '.join(ins) or '-'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "channels": self.size,
            "unit_width": self.unit_width,
            "unit": self.unit,
            "layers": [{"node": n, "side": s} for n, s in self.layers],
        }


@dataclass
class DependencyAnalysis:
    """The channel maps of a graph, the unions between them, and the groups that result."""

    graph: Graph
    maps: dict[fx.Node, ChannelMap] = field(default_factory=dict)
    uses: list[LayerUse] = field(default_factory=list)
    splits: list[tuple[fx.Node, list[list[int]]]] = field(default_factory=list)  # split nodes and their parts' ids
    #: reshapes that spell out a followed size: (node, slot in its sizes, ids on that axis, columns per id)
    reshapes: list[tuple[fx.Node, int, list[int], int]] = field(default_factory=list)
    heads: set[int] = field(default_factory=set)  # elements that are attention heads (a head split made them)
    union: UnionFind = field(default_factory=UnionFind)
    fixed: set[int] = field(default_factory=set)
    why_fixed: dict[int, str] = field(default_factory=dict)
    groups: list[PruningGroup] = field(default_factory=list)
    _next: int = 0

    # -- building -----------------------------------------------------------------------------
    def fresh(self, count: int) -> list[int]:
        ids = list(range(self._next, self._next + count))
        self._next += count
        for i in ids:
            self.union[i]  # registers the element
        return ids

    def fix(self, ids: Iterable[int], reason: str) -> None:
        for i in ids:
            self.fixed.add(i)
            self.why_fixed.setdefault(i, reason)

    def tie(self, a: list[int], b: list[int]) -> None:
        for x, y in zip(a, b, strict=True):
            self.union.union(x, y)

    def root(self, element: int) -> int:
        return int(self.union[element])

    def keep_mask(self, ids: list[int], removed: set[int]) -> torch.Tensor:
        return torch.tensor([self.root(i) not in removed for i in ids], dtype=torch.bool)


def _shape(node: Any) -> tuple[int, ...] | None:
    if not isinstance(node, fx.Node):
        return None
    facts = node.meta.get("graphopt")
    return tuple(facts.shape) if facts is not None and facts.shape is not None else None


def _arg(node: fx.Node, position: int, name: str, default: Any = None) -> Any:
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[position] if len(node.args) > position else default


def _weighted(layer: Layer) -> bool:
    return layer.is_constant("weight") and layer.is_constant("bias")


def analyze(graph: Graph, *, ignore: Iterable[str] = ()) -> DependencyAnalysis:
    """Follow channels through ``graph`` and group the prunable ones (see the module docstring).

    ``ignore`` names layers (module paths such as ``layers.0.conv1``, or node names) whose output
    channels must stay; an unknown name raises ``InputError``.
    """
    analysis = DependencyAnalysis(graph)
    ignored = resolve_ignored(graph, ignore)
    module = graph.module
    maps = analysis.maps
    for node in module.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            continue
        if node.op == "output":
            for source in node.all_input_nodes:
                if source in maps:
                    analysis.fix(maps[source].ids, "reaches a graph output")
            continue
        handled = _visit(analysis, node, op_kind(module, node))
        if not handled:
            for source in node.all_input_nodes:
                if source in maps:
                    analysis.fix(maps[source].ids, f"read by {node.name} ({op_kind(module, node)})")
            maps.pop(node, None)
        if node in ignored and node in maps:
            analysis.fix(maps[node].ids, f"{node.name} is ignored")
    _collect_groups(analysis)
    return analysis


def resolve_ignored(graph: Graph, names: Iterable[str]) -> set[fx.Node]:
    names = list(names)
    found: set[fx.Node] = set()
    for name in names:
        matches = [
            n for n in graph.module.graph.nodes if n.name == name or (n.op == "call_module" and n.target == name)
        ]
        if not matches:
            layers = [str(n.target) for n in graph.module.graph.nodes if n.op == "call_module"][:6]
            raise InputError(f"ignored layer '{name}' is not in the graph (layers are named like {', '.join(layers)})")
        found.update(matches)
    return found


def _visit(analysis: DependencyAnalysis, node: fx.Node, kind: str) -> bool:
    """Give ``node`` its channel map (or none) and tie/fix what it requires; False: unknown op."""
    maps = analysis.maps
    shape = _shape(node)
    inputs = [a for a in node.all_input_nodes if a in maps]
    if kind in CONV_KINDS or kind == "linear":
        layer = layer_of(analysis.graph.module, node)
        return layer is not None and _weighted(layer) and _visit_weighted(analysis, node, layer, kind, shape)
    if kind == "batch_norm":
        layer = layer_of(analysis.graph.module, node)
        source = node.args[0] if node.args else None
        output = batch_norm_output(layer) if layer is not None else None
        if layer is None or output is None or not isinstance(source, fx.Node) or not _weighted(layer):
            return False
        if source in maps and maps[source].axis != 1 - len(_shape(source) or ()):
            return False
        analysis.uses.append(LayerUse(node, layer, maps.get(source), maps.get(source)))
        if source in maps:
            maps[output] = maps[source]
        return True
    if node.target is operator.getitem:
        return not inputs  # a tuple's items: only the BatchNorm case above sets a map on one
    if kind == "size" or (node.target is getattr and node.args[1:] in (("shape",), ("dtype",), ("device",))):
        return True  # reads sizes, not values: a pruned tensor simply reports its new size
    if not inputs:
        return True  # nothing followed flows in: nothing to decide
    first = node.args[0] if node.args else None
    if kind in PER_CHANNEL and first in maps and len(inputs) == 1:
        maps[node] = maps[first]  # type: ignore[index]
        return True
    if kind in SPATIAL and first in maps and len(inputs) == 1:
        source_shape = _shape(first) or ()
        if len(source_shape) >= 3 and maps[first].axis == 1 - len(source_shape):  # type: ignore[index]
            maps[node] = ChannelMap(1 - len(shape or ()), maps[first].ids)  # type: ignore[index]
            return True
        return False
    if kind == "reshape" and first in maps and len(inputs) == 1 and _visit_shuffle(analysis, node, first, shape):  # type: ignore[arg-type]
        return True
    if kind in attention.KINDS and attention.visit(analysis, node, kind):
        return True
    if kind in ("flatten", "reshape") and first in maps and len(inputs) == 1:
        return _visit_flatten(analysis, node, first, shape)  # type: ignore[arg-type]
    if kind == "mean" and first in maps and len(inputs) == 1:
        return _visit_mean(analysis, node, first, shape)  # type: ignore[arg-type]
    if kind in ELEMENTWISE_BINARY:
        return _visit_elementwise(analysis, node, shape)
    if kind == "cat":
        return _visit_cat(analysis, node, shape)
    if kind in ("chunk", "split"):
        return _visit_chunk(analysis, node, kind)
    return False


def _visit_weighted(
    analysis: DependencyAnalysis, node: fx.Node, layer: Layer, kind: str, shape: tuple[int, ...] | None
) -> bool:
    maps = analysis.maps
    source = layer.input
    weight = layer.get("weight")
    if weight is None or shape is None or not isinstance(source, fx.Node):
        return False
    source_shape = _shape(source) or ()
    in_map = maps.get(source)
    groups = layer.groups if kind in CONV_KINDS else 1
    if kind in CONV_KINDS:
        axis, channel_axis_in = 1 - len(shape), 1 - len(source_shape)
    else:
        axis, channel_axis_in = -1, -1
    if in_map is not None and in_map.axis != channel_axis_in:
        analysis.fix(in_map.ids, f"{node.name} reads them on another axis")
        in_map = None
    out_ids = analysis.fresh(int(weight.shape[0]))
    if groups > 1:
        per_group_in, per_group_out = int(weight.shape[1]), int(weight.shape[0]) // groups
        if per_group_in == 1:  # depthwise: input channel k feeds exactly the outputs of group k
            if in_map is None:
                analysis.fix(out_ids, f"{node.name} is depthwise over channels that cannot be removed")
            else:
                for k in range(groups):
                    for j in range(per_group_out):
                        analysis.union.union(in_map.ids[k], out_ids[k * per_group_out + j])
        else:
            if in_map is not None:
                for k in range(1, groups):
                    analysis.tie(in_map.ids[:per_group_in], in_map.ids[k * per_group_in : (k + 1) * per_group_in])
            for k in range(1, groups):
                analysis.tie(out_ids[:per_group_out], out_ids[k * per_group_out : (k + 1) * per_group_out])
    maps[node] = ChannelMap(axis, out_ids)
    analysis.uses.append(LayerUse(node, layer, in_map, maps[node], groups))
    return True


def _visit_flatten(analysis: DependencyAnalysis, node: fx.Node, source: fx.Node, shape: tuple[int, ...] | None) -> bool:
    before, channel_map = _shape(source), analysis.maps[source]
    if before is None or shape is None or len(before) < 2 or channel_map.axis != 1 - len(before):
        return False
    block = math.prod(before[2:])
    if tuple(shape) != (before[0], before[1] * block):
        return False
    if op_kind(analysis.graph.module, node) == "reshape":
        sizes = [a for a in node.args[1:]] if not isinstance(node.args[1], (tuple, list)) else list(node.args[1])
        if any(isinstance(s, int) and s != -1 for s in sizes[1:]):
            return False  # a literal width would not follow the pruned channel count
    analysis.maps[node] = ChannelMap(-1, [i for i in channel_map.ids for _ in range(block)])
    return True


def _reshape_sizes(node: fx.Node) -> list[Any]:
    sizes = node.args[1:]
    return list(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else list(sizes)


def _visit_shuffle(analysis: DependencyAnalysis, node: fx.Node, source: fx.Node, shape: tuple[int, ...] | None) -> bool:
    """Channel shuffle: ``view(N, g, C/g, *S)``, ``transpose(1, 2)``, ``reshape(N, C, *S)``.

    Position ``j`` of every one of the ``g`` blocks is one element (the blocks stay equal, so the
    shuffle of the pruned tensor is the pruned shuffle), and the output's position ``j*g + i``
    holds block ``i``'s position ``j``. The sizes ``C/g`` and ``C`` must come from the tensor at
    run time (``x.shape``), not literals; the group count ``g`` may be one.
    """
    before, channel_map = _shape(source), analysis.maps[source]
    if before is None or shape is None or len(before) < 3 or channel_map.axis != 1 - len(before):
        return False
    channels = before[1]
    if len(shape) != len(before) + 1 or shape[0] != before[0] or shape[3:] != before[2:]:
        return False
    groups, width = shape[1], shape[2]
    if groups * width != channels or any(isinstance(s, int) for s in _reshape_sizes(node)[2:3]):
        return False
    transpose = only_user(node)
    module = analysis.graph.module
    if (
        transpose is None
        or op_kind(module, transpose) != "transpose"
        or list(transpose.args[1:3]) not in ([1, 2], [2, 1])
    ):
        return False
    back = only_user(transpose)
    while back is not None and op_kind(module, back) == "contiguous":
        back = only_user(back)
    if back is None or op_kind(module, back) != "reshape" or _shape(back) != before:
        return False
    if isinstance(_reshape_sizes(back)[1], int):
        return False  # a literal channel count would not follow the pruning
    for block in range(1, groups):
        analysis.tie(channel_map.ids[:width], channel_map.ids[block * width : (block + 1) * width])
    shuffled = [channel_map.ids[i * width + j] for j in range(width) for i in range(groups)]
    analysis.maps[back] = ChannelMap(channel_map.axis, shuffled)
    return True


def _visit_mean(analysis: DependencyAnalysis, node: fx.Node, source: fx.Node, shape: tuple[int, ...] | None) -> bool:
    before, channel_map = _shape(source), analysis.maps[source]
    dims = _arg(node, 1, "dim")
    keepdim = bool(_arg(node, 2, "keepdim", False))
    if before is None or shape is None or dims is None:
        return False
    dims = [dims] if isinstance(dims, int) else list(dims)
    rank = len(before)
    channel = rank + channel_map.axis
    positive = [d % rank for d in dims]
    if channel in positive:
        return False
    axis = channel_map.axis if keepdim else channel - rank + sum(1 for d in positive if d > channel)
    analysis.maps[node] = ChannelMap(axis, channel_map.ids)
    return True


def _visit_elementwise(analysis: DependencyAnalysis, node: fx.Node, shape: tuple[int, ...] | None) -> bool:
    maps = analysis.maps
    followed = [a for a in node.args[:2] if isinstance(a, fx.Node) and a in maps]
    others = [a for a in node.args[:2] if isinstance(a, fx.Node) and a not in maps]
    if shape is None or not followed:
        return False
    first = maps[followed[0]]
    for other in followed[1:]:
        other_map = maps[other]
        if other_map.axis != first.axis or len(other_map.ids) != len(first.ids):
            return False
        analysis.tie(first.ids, other_map.ids)
    for other in others:
        facts = other.meta.get("graphopt")
        if facts is None:
            return False
        other_shape = _shape(other)
        if other_shape is None:
            continue  # a Python number computed at run time (a size, a scale): same for every channel
        if len(other_shape) >= -first.axis and other_shape[first.axis] != 1:
            analysis.fix(first.ids, f"{node.name} combines them with a tensor of per-channel shape")
    maps[node] = ChannelMap(first.axis, first.ids)
    return True


def _visit_cat(analysis: DependencyAnalysis, node: fx.Node, shape: tuple[int, ...] | None) -> bool:
    maps = analysis.maps
    tensors = node.args[0]
    dim = _arg(node, 1, "dim", 0)
    if shape is None or not isinstance(tensors, (list, tuple)) or not all(isinstance(t, fx.Node) for t in tensors):
        return False
    axis = dim - len(shape) if dim >= 0 else dim
    parts: list[ChannelMap] = []
    for tensor in tensors:
        assert isinstance(tensor, fx.Node)
        part = maps.get(tensor)
        tensor_shape = _shape(tensor)
        if tensor_shape is None:
            return False
        if part is None or part.axis != axis:
            if part is not None:
                analysis.fix(part.ids, f"{node.name} concatenates them on another axis")
            part = ChannelMap(axis, analysis.fresh(tensor_shape[axis]))
            analysis.fix(part.ids, f"{node.name} concatenates them with channels that cannot be removed")
        parts.append(part)
    maps[node] = ChannelMap(axis, [i for part in parts for i in part.ids])
    return True


def _visit_chunk(analysis: DependencyAnalysis, node: fx.Node, kind: str) -> bool:
    """``chunk``/``split`` on the channel axis: each part gets its slice of the map.

    Equal parts (``chunk(x, n)``, ``split(x, size)``) must stay equal, so position j of every part
    is one element; ``split(x, [a, b, ...])`` parts are independent and the sizes are rewritten
    when channels go.
    """
    maps = analysis.maps
    source = node.args[0]
    facts = node.meta.get("graphopt")
    if not isinstance(source, fx.Node) or facts is None or not facts.shapes or len(node.args) < 2:
        return False
    dim = _arg(node, 2, "dim", 0)
    source_shape = _shape(source) or ()
    channel_map = maps[source]
    if not isinstance(dim, int) or (dim - len(source_shape) if dim >= 0 else dim) != channel_map.axis:
        return False
    widths = [int(s[channel_map.axis]) for s in facts.shapes]
    sections = node.args[1]
    listed = kind == "split" and isinstance(sections, (list, tuple))
    if not listed and (not isinstance(sections, int) or len(set(widths[:-1])) > 1 or widths[-1] != widths[0]):
        return False  # chunk/split with a ragged last part: not handled
    if isinstance(sections, (list, tuple)) and list(sections) != widths:
        return False
    offsets = [sum(widths[:k]) for k in range(len(widths) + 1)]
    slices = [channel_map.ids[offsets[k] : offsets[k + 1]] for k in range(len(widths))]
    if not listed:
        for part in slices[1:]:
            analysis.tie(slices[0], part)
    if kind == "split":
        analysis.splits.append((node, slices))
    for user in node.users:
        if user.target is not operator.getitem or not isinstance(user.args[1], int):
            analysis.fix(channel_map.ids, f"{node.name}'s parts are used as a whole")
            return True
        maps[user] = ChannelMap(channel_map.axis, slices[user.args[1]])
    return True


def _collect_groups(analysis: DependencyAnalysis) -> None:
    fixed_roots = {analysis.root(i) for i in analysis.fixed}
    footprint: dict[int, set[tuple[str, str]]] = {}
    width: dict[int, int] = {}
    for use in analysis.uses:
        for side, channel_map in (("out", use.output), ("in", use.input)):
            if channel_map is None or (side == "in" and use.layer.kind == "batch_norm"):
                continue
            counts: dict[int, int] = {}
            for element in channel_map.ids:
                root = analysis.root(element)
                if root in fixed_roots:
                    continue
                footprint.setdefault(root, set()).add((use.node.name, side))
                counts[root] = counts.get(root, 0) + 1
            for root, count in counts.items():
                width[root] = max(width.get(root, 1), count)
    by_footprint: dict[frozenset[tuple[str, str]], list[int]] = {}
    for root, touched in footprint.items():
        if any(side == "out" for _, side in touched):
            by_footprint.setdefault(frozenset(touched), []).append(root)
    nodes = list(analysis.graph.module.graph.nodes)
    order = {node.name: index for index, node in enumerate(nodes)}
    label = {node.name: str(node.target) if node.op == "call_module" else node.name for node in nodes}
    ordered = sorted(by_footprint.items(), key=lambda item: min(order[name] for name, _ in item[0]))
    for index, (footprint_key, roots) in enumerate(ordered):
        layers = [(label[name], side) for name, side in sorted(footprint_key, key=lambda e: (order[e[0]], e[1]))]
        heads = {analysis.root(i) for i in analysis.heads}
        unit = "heads" if any(r in heads for r in roots) else "channels"
        analysis.groups.append(
            PruningGroup(index, layers, sorted(roots), unit_width=max(width.get(r, 1) for r in roots), unit=unit)
        )


def groups(graph: Graph, *, ignore: Iterable[str] = ()) -> list[PruningGroup]:
    """The prunable dependency groups of ``graph`` (see ``analyze``), in graph order.

    >>> for group in graphopt.pruning.groups(graphopt.capture(model, x)):
    ...     print(group.describe())
    """
    return analyze(graph, ignore=ignore).groups
