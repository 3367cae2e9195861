"""Split an exported program into TVM segments and PyTorch segments (``fallback="torch"``).

A node runs in PyTorch when TVM's frontend cannot translate its op (the same test that makes a
build without fallback fail: ``lower.unsupported_op``) or when it touches a data-dependent size:
its value, or one of its inputs, has a shape with an unbacked symbol (``nonzero``, a boolean mask,
everything that indexes with their count). A TVM library has one static signature per function,
so such a size can only live in PyTorch; a node after it whose shapes are static again (a sum over
the kept boxes) goes back to TVM.

Nodes are given partition numbers so that ``torch.fx.passes.split_module`` makes as few segments
as possible while the segment graph stays acyclic: TVM segments are even, PyTorch ones odd, and a
node gets the smallest number of its parity that is not below any of its inputs' numbers. A node
then never depends on a later segment, and parallel branches of one kind share a segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols
from torch.fx.passes.split_module import split_module

from graphopt.ir import Graph
from graphopt.targets.lowering.lower import origin_node, supported_ops, unsupported_op

TVM, TORCH = "tvm", "torch"


@dataclass(frozen=True)
class FallbackNode:
    """One exported node that runs in PyTorch: where it came from and why."""

    node: str  #: the graphopt node (the user's graph) it came from
    op: str
    source: str | None  #: the user's source line
    reason: str  #: "no TVM converter", "TVM converter failed" or "data-dependent shape"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "source": self.source, "reason": self.reason}


def data_dependent(node: fx.Node) -> bool:
    """Whether ``node``'s value, or a value it reads, has a size only known at run time."""
    if free_unbacked_symbols(node.meta.get("val")):
        return True
    return any(free_unbacked_symbols(arg.meta.get("val")) for arg in node.all_input_nodes)


def fallback_nodes(graph: Graph, module: fx.GraphModule) -> dict[str, FallbackNode | None]:
    """The call_function nodes of ``module`` (an unlifted exported program of ``graph``) that must run
    in PyTorch, by node name; None for the size bookkeeping export adds (``sym_size``, runtime
    asserts on the sizes), which go along but are not worth reporting."""
    known = supported_ops()
    found: dict[str, FallbackNode | None] = {}
    for node in module.graph.nodes:
        if node.op != "call_function":
            continue
        op = unsupported_op(node, known)
        reason = "no TVM converter" if op is not None else "data-dependent shape" if data_dependent(node) else None
        if reason is None:
            continue
        if op is None and not isinstance(node.meta.get("val"), torch.Tensor):
            found[node.name] = None
            continue
        found[node.name] = describe(graph, node, reason, op)
    return found


def describe(graph: Graph, node: fx.Node, reason: str, op: str | None = None) -> FallbackNode:
    """``node`` (of the exported module) as the report names it: the user's node, op and source line."""
    origin = origin_node(graph, node)
    where = origin.name if origin is not None else node.name
    source = graph.info(origin).source if origin is not None else None
    target_name = getattr(node.target, "__name__", str(node.target))
    label = op or (f"aten.{target_name}" if isinstance(node.target, torch._ops.OpOverload) else target_name)
    return FallbackNode(where, label, source or _stack_line(node), reason)


def _stack_line(node: fx.Node) -> str | None:
    """The last ``File "...", line N`` of a node's stack trace, as ``path:N``."""
    trace = node.meta.get("stack_trace") or ""
    lines = [line.strip() for line in trace.splitlines() if line.strip().startswith("File ")]
    if not lines:
        return None
    parts = lines[-1].split('"')
    number = lines[-1].split("line ")[-1].split(",")[0]
    return f"{parts[1]}:{number}" if len(parts) > 1 else None


def partition_numbers(module: fx.GraphModule, torch_nodes: set[str]) -> dict[str, int]:
    """Each compute node's segment number (even: TVM, odd: PyTorch); see the module docstring.

    A node computed from parameters alone (a transposed weight) then moves to the segment of its
    first user, so that it is folded there instead of crossing segments as a run-time input.
    """
    numbers: dict[str, int] = {}
    constant: set[str] = set()
    for node in module.graph.nodes:
        if node.op in ("placeholder", "get_attr", "output"):
            continue
        parity = 1 if node.name in torch_nodes else 0
        floor = max((numbers.get(arg.name, 0) for arg in node.all_input_nodes), default=0)
        numbers[node.name] = floor if floor % 2 == parity else floor + 1
        if all(arg.op == "get_attr" or arg.name in constant for arg in node.all_input_nodes):
            constant.add(node.name)
    for node in reversed(module.graph.nodes):
        users = [numbers[user.name] for user in node.users if user.name in numbers]
        if node.name in constant and users:
            first = min(users)  # never below the node's own number: its users came after it
            parity = 1 if node.name in torch_nodes else 0
            numbers[node.name] = first if first % 2 == parity else first - 1
    return numbers


def drop_guards(module: fx.GraphModule) -> None:
    """Remove the input-guard call an unlifted export adds (``_guards_fn``): the whole artifact checks
    its inputs against the manifest, and a segment of it would otherwise hold a call to a module."""
    for node in list(module.graph.nodes):
        if node.op == "call_module" and str(node.target) == "_guards_fn" and not node.users:
            module.graph.erase_node(node)
    module.recompile()


def split(module: fx.GraphModule, torch_nodes: set[str]) -> tuple[fx.GraphModule, dict[str, str]]:
    """The outer module calling one submodule per segment, and each submodule's kind (TVM or TORCH)."""
    drop_guards(module)
    numbers = partition_numbers(module, torch_nodes)
    outer = split_module(
        module, module, lambda node: numbers[node.name], keep_original_order=True, keep_original_node_name=True
    )
    kinds = {}
    for node in outer.graph.nodes:
        if node.op == "call_module":
            kinds[str(node.target)] = TORCH if int(str(node.target).removeprefix("submod_")) % 2 else TVM
    inline_attributes(outer)
    return outer, kinds


def inline_attributes(outer: fx.GraphModule) -> None:
    """Give each segment its own parameters: ``split_module`` passes them in as arguments, which
    would make them run-time inputs of a TVM library instead of constants folded into it."""
    for call in [n for n in outer.graph.nodes if n.op == "call_module"]:
        segment = submodule(outer, str(call.target))
        placeholders = [n for n in segment.graph.nodes if n.op == "placeholder"]
        kept = []
        for arg, placeholder in zip(call.args, placeholders, strict=True):
            if not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
                kept.append(arg)
                continue
            name = str(arg.target).replace(".", "_")
            segment.register_buffer(name, _attribute(outer, str(arg.target)).detach())
            with segment.graph.inserting_after(placeholder):
                attribute = segment.graph.get_attr(name)
            placeholder.replace_all_uses_with(attribute)
            segment.graph.erase_node(placeholder)
        call.args = tuple(kept)
        segment.recompile()
    for node in [n for n in outer.graph.nodes if n.op == "get_attr" and not n.users]:
        outer.graph.erase_node(node)
    outer.recompile()


def submodule(outer: fx.GraphModule, name: str) -> fx.GraphModule:
    """A segment of the outer module (``split_module`` makes each one a GraphModule)."""
    child = outer.get_submodule(name)
    assert isinstance(child, fx.GraphModule), name
    return child


def _attribute(module: torch.nn.Module, qualified: str) -> torch.Tensor:
    value: Any = module
    for part in qualified.split("."):
        value = getattr(value, part)
    return value


def segment_inputs(outer: fx.GraphModule, inputs: tuple[Any, ...]) -> dict[str, tuple[Any, ...]]:
    """What each segment is called with when ``outer`` runs on ``inputs`` (its example inputs)."""
    seen: dict[str, tuple[Any, ...]] = {}
    handles = []
    for name, child in outer.named_children():
        handles.append(child.register_forward_pre_hook(lambda _m, args, name=name: seen.setdefault(name, args)))
    try:
        with torch.no_grad():
            outer(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return seen
