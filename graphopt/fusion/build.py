"""``fuse_models``: capture the members, copy their graphs into one, merge, fuse, combine."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from graphopt.errors import InputError
from graphopt.fusion.horizontal import MEMBER, WORKING_SET_BYTES, fuse_horizontally
from graphopt.fusion.merge import delete_unused, merge_identical
from graphopt.fusion.report import FusionReport, MemberInfo
from graphopt.ir import Graph, GraphStats

#: How the members' outputs become the ensemble's output (see ``fuse_models``).
COMBINES = ("mean", "weighted", "vote", "stack", "none")


def fuse_models(
    models: Sequence[Any],
    example_inputs: Any,
    combine: str = "mean",
    weights: Sequence[float] | None = None,
    *,
    merge: bool = True,
    horizontal: bool | str = "auto",
    name: str = "ensemble",
) -> tuple[Graph, FusionReport]:
    """One ``Graph`` that runs every member and returns their combined output.

    ``models``: ``nn.Module`` s (captured on a copy; never changed), ``torch.export`` programs, or
    captured ``Graph`` s.
    ``example_inputs``: one tensor or tuple shared by all members, or a *list* of per-member input
    tuples (one per member; the fused graph then takes all of them, member by member).
    ``combine``:

    - ``"mean"``: the mean of the outputs; ``"weighted"``: ``sum(w_i * out_i) / sum(w)`` with
      ``weights`` (non-negative, one per member);
    - ``"vote"``: majority vote over each member's argmax along the last dimension, returned as
      the winning class index (int64, the output shape without its last dimension); a tie goes to
      the lowest class index;
    - ``"stack"``: the outputs stacked along a new first dimension (member x output shape);
    - ``"none"``: a tuple of every member's output.

    ``merge`` computes once what several members compute with equal weights (a shared backbone);
    ``horizontal`` runs same-architecture members as one wider model where their layers allow it:
    ``"auto"`` (the default) only where the wide layers' activations stay in cache (at small batch
    sizes, where it pays; see ``graphopt.fusion.horizontal``), ``True`` always, ``False`` never.
    The result goes to ``graphopt.optimize`` and ``graphopt.compile`` like any captured graph.

    >>> graph, report = graphopt.fuse_models([a, b], torch.randn(1, 784), combine="vote")
    """
    members = _check_members(models)
    if horizontal not in (True, False, "auto"):
        raise InputError(f"horizontal must be True, False or 'auto', not {horizontal!r}")
    weights = _check_combine(combine, weights, len(members))
    inputs_per_member, shared = _member_inputs(example_inputs, len(members))
    graphs = [_capture(model, inputs) for model, inputs in zip(members, inputs_per_member, strict=True)]
    outputs = [g(*g.example_inputs) for g in graphs]
    if combine != "none":
        _check_combinable(combine, graphs, outputs)
    unfused = _total_stats(graphs)
    member_info = [MemberInfo(g.name, g.capture_method, g.stats().nodes, g.stats().param_bytes) for g in graphs]
    module, inputs = _assemble(graphs, inputs_per_member, shared)
    methods = {g.capture_method for g in graphs}
    graph = Graph(
        module,
        inputs,
        name=name,
        capture_method=methods.pop() if len(methods) == 1 else "mixed",
        notes=[f"fused from {len(graphs)} member(s): {', '.join(g.name for g in graphs)} (combine={combine})"],
    )
    merged = merge_identical(graph) if merge else []
    fused_groups: list[str] = []
    member_outputs = _member_outputs(graph)
    stacked = None
    if horizontal and shared and combine != "none":
        graph.refresh()
        limit = WORKING_SET_BYTES if horizontal == "auto" else None
        stacked, fused_groups = fuse_horizontally(graph, member_outputs, max_bytes=limit)
    _combine(graph, member_outputs, combine, weights, stacked, outputs[0])
    graph.module.graph.eliminate_dead_code()
    delete_unused(graph.module)
    graph.refresh()
    report = FusionReport(
        combine=combine,
        members=member_info,
        unfused=unfused,
        fused=graph.stats(),
        merged=merged,
        merged_bytes=unfused.param_bytes - graph.stats().param_bytes if merged else 0,
        horizontal=fused_groups,
    )
    if merged:
        graph.notes.append(f"merged {len(merged)} node(s) computed by several members with equal weights")
    if fused_groups:
        graph.notes.append(f"fused {len(fused_groups)} layer group(s) of the members horizontally")
    return graph, report


def _check_members(models: Any) -> list[Any]:
    if isinstance(models, (nn.Module, Graph)) or not isinstance(models, Sequence):
        raise InputError("fuse_models takes a list of models (nn.Module or graphopt.Graph)")
    if len(models) == 0:
        raise InputError("fuse_models needs at least one model, the list is empty")
    for index, model in enumerate(models):
        if not isinstance(model, (nn.Module, Graph, torch.export.ExportedProgram)):
            raise InputError(
                f"member {index} is a {type(model).__name__}, expected a torch.nn.Module, ExportedProgram or graphopt.Graph"
            )
    return list(models)


def _check_combine(combine: str, weights: Sequence[float] | None, count: int) -> list[float] | None:
    if combine not in COMBINES:
        raise InputError(f"unknown combine '{combine}' (choose {', '.join(COMBINES)})")
    if combine != "weighted":
        if weights is not None:
            raise InputError(f"weights are used only with combine='weighted', not '{combine}'")
        return None
    if weights is None:
        raise InputError("combine='weighted' needs weights, one per member")
    values = [float(w) for w in weights]
    if len(values) != count:
        raise InputError(f"{len(values)} weight(s) given for {count} member(s): give one weight per member")
    if any(not math.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
        raise InputError(f"weights must be finite, non-negative and not all zero, got {values}")
    total = sum(values)
    return [w / total for w in values]


def _member_inputs(example_inputs: Any, count: int) -> tuple[list[tuple[Any, ...]], bool]:
    """Per-member input tuples, and whether all members share one input."""
    from graphopt.capture import normalize_inputs

    if example_inputs is None:
        raise InputError("fuse_models needs example inputs (a tensor, a tuple, or a list of per-member tuples)")
    per_member = isinstance(example_inputs, list) and all(isinstance(x, (tuple, list)) for x in example_inputs)
    if not per_member:
        shared = normalize_inputs(example_inputs)
        return [shared] * count, True
    if len(example_inputs) != count:
        raise InputError(f"{len(example_inputs)} per-member input tuple(s) given for {count} member(s)")
    return [normalize_inputs(tuple(x)) for x in example_inputs], False


def _capture(model: Any, inputs: tuple[Any, ...]) -> Graph:
    from graphopt.capture import capture

    if isinstance(model, Graph):
        if len(model.example_inputs) != len(inputs) or any(
            a.shape != b.shape for a, b in zip(model.example_inputs, inputs, strict=True)
        ):
            raise InputError(f"graph member '{model.name}' was captured for other input shapes than those given")
        graph = model.copy()
        graph.example_inputs = tuple(inputs)
        return graph
    return capture(model, inputs)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "x".join(str(d) for d in value.shape) or "scalar"
    return f"a {type(value).__name__}"


def _check_combinable(combine: str, graphs: list[Graph], outputs: list[Any]) -> None:
    for graph, output in zip(graphs, outputs, strict=True):
        if not isinstance(output, torch.Tensor):
            raise InputError(
                f"cannot combine with '{combine}': member '{graph.name}' returns {_describe(output)}, "
                "not one tensor (use combine='none')"
            )
    first = outputs[0]
    for graph, output in zip(graphs[1:], outputs[1:], strict=True):
        if output.shape != first.shape:
            raise InputError(
                f"cannot combine with '{combine}': member '{graph.name}' returns shape {_describe(output)}, "
                f"member '{graphs[0].name}' {_describe(first)}"
            )
    if combine in ("mean", "weighted", "vote") and not first.is_floating_point():
        raise InputError(f"cannot combine with '{combine}': the members return {first.dtype}, not floating point")
    if combine == "vote" and first.dim() == 0:
        raise InputError("cannot combine with 'vote': the members return scalars, not class scores")


def _total_stats(graphs: list[Graph]) -> GraphStats:
    stats = [g.stats() for g in graphs]
    return GraphStats(
        nodes=sum(s.nodes for s in stats),
        params=sum(s.params for s in stats),
        param_bytes=sum(s.param_bytes for s in stats),
        flops=sum(s.flops for s in stats),
    )


def _assemble(
    graphs: list[Graph], inputs_per_member: list[tuple[Any, ...]], shared: bool
) -> tuple[fx.GraphModule, tuple[Any, ...]]:
    """Every member's nodes copied into one graph; its output is the tuple of member outputs."""
    root = nn.Module()
    fused = fx.Graph()
    shared_inputs = (
        [fused.placeholder(f"x{j}" if len(inputs_per_member[0]) > 1 else "x") for j in range(len(inputs_per_member[0]))]
        if shared
        else []
    )
    outputs = []
    for index, graph in enumerate(graphs):
        source = graph.module.graph
        root.add_module(f"m{index}", graph.module)
        placeholders = [n for n in source.nodes if n.op == "placeholder"]
        own = [] if shared else [fused.placeholder(f"m{index}_x{j}") for j in range(len(placeholders))]
        mapped = shared_inputs if shared else own
        val_map: dict[fx.Node, fx.Node] = dict(zip(placeholders, mapped, strict=True))
        before = set(fused.nodes)
        output = fused.graph_copy(source, val_map)
        codegen = getattr(source, "_codegen", None)
        spec = getattr(getattr(codegen, "pytree_info", None), "out_spec", None)
        if spec is not None:  # an exported member's flat outputs, restructured as the model returns them
            output = pytree.tree_unflatten(list(output) if isinstance(output, (list, tuple)) else [output], spec)
        for node in fused.nodes:
            if node in before:
                continue
            node.meta[MEMBER] = index
            if node.op != "placeholder":
                node._rename(f"m{index}_{node.name}")
            if node.op in ("call_module", "get_attr"):
                node.target = f"m{index}.{node.target}"
        outputs.append(output)
    fused.output(tuple(outputs))
    training = any(g.module.training for g in graphs)
    module = fx.GraphModule(root, fused, "Ensemble")
    for submodule in module.modules():
        if type(submodule) is nn.Module:
            submodule.training = training  # the containers GraphModule made for m0, m1, ...
    module.training = training
    inputs = tuple(inputs_per_member[0]) if shared else tuple(t for inputs in inputs_per_member for t in inputs)
    return module, inputs


def _member_outputs(graph: Graph) -> list[Any]:
    output = graph.output_node()
    return list(output.args[0])  # type: ignore[arg-type]


def _combine(
    graph: Graph,
    member_outputs: list[Any],
    combine: str,
    weights: list[float] | None,
    stacked: fx.Node | None,
    sample: Any,
) -> None:
    """Replace the graph's output (the tuple of member outputs) by their combination."""
    fx_graph = graph.module.graph
    output = graph.output_node()
    with fx_graph.inserting_before(output):
        if combine == "none":
            result: Any = tuple(member_outputs)
        else:
            if stacked is None:
                stacked = fx_graph.call_function(torch.stack, (list(member_outputs), 0))
            if combine == "stack":
                result = stacked
            elif combine == "mean":
                result = fx_graph.call_function(torch.mean, (stacked, 0))
            elif combine == "weighted":
                assert weights is not None
                shape = (len(weights),) + (1,) * sample.dim()
                graph.module.register_buffer(
                    "ensemble_weights", torch.tensor(weights, dtype=sample.dtype).reshape(shape)
                )
                scale = fx_graph.get_attr("ensemble_weights")
                scaled = fx_graph.call_function(torch.mul, (stacked, scale))
                result = fx_graph.call_function(torch.sum, (scaled, 0))
            else:
                graph.module.register_buffer("ensemble_classes", torch.arange(sample.shape[-1]))
                choice = fx_graph.call_function(torch.argmax, (stacked, -1), {"keepdim": True})
                classes = fx_graph.get_attr("ensemble_classes")
                ballots = fx_graph.call_function(torch.eq, (choice, classes))
                counts = fx_graph.call_function(torch.sum, (ballots, 0))
                result = fx_graph.call_function(torch.argmax, (counts, -1))
    output.args = (result,)
