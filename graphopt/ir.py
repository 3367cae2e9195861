"""graphopt's IR: a torch.fx GraphModule plus the example inputs that give every node its facts.

The module is always executable by PyTorch (``graph(*inputs)``), so any pass can be checked by
running the graph before and after it. Passes edit ``graph.module.graph`` in place on a copy the
pass manager hands them, then call ``graph.refresh()`` to recompile and re-annotate.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx
import torch
from torch import fx

from graphopt.metadata import NodeInfo, annotate, info

FUSION_GROUP = "fusion_group"  #: node.meta key: id of the fusion group a node belongs to
FUSION_PATTERN = "fusion_pattern"  #: node.meta key: the pattern name of that group ("conv2d+relu")


@dataclass(frozen=True)
class GraphStats:
    """Size of a graph: compute nodes, parameter elements, parameter bytes, FLOPs per run."""

    nodes: int
    params: int
    param_bytes: int
    flops: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Graph:
    """A captured model: ``module`` (fx.GraphModule), ``example_inputs``, and how it was captured."""

    def __init__(
        self,
        module: fx.GraphModule,
        example_inputs: tuple[torch.Tensor, ...],
        *,
        name: str = "model",
        capture_method: str = "symbolic_trace",
        notes: list[str] | None = None,
    ) -> None:
        self.module = module
        self.example_inputs = example_inputs
        self.name = name
        self.capture_method = capture_method
        self.notes = list(notes or [])

    def __call__(self, *inputs: Any) -> Any:
        with torch.no_grad():
            return self.module(*inputs)

    def __repr__(self) -> str:
        stats = self.stats()
        return f"<graphopt.Graph {self.name!r}: {stats.nodes} nodes, {stats.param_bytes} param bytes>"

    # -- editing ------------------------------------------------------------------------------
    def copy(self) -> Graph:
        """An independent copy: passes work on one so a failure leaves the original untouched."""
        return Graph(
            copy.deepcopy(self.module),
            self.example_inputs,
            name=self.name,
            capture_method=self.capture_method,
            notes=self.notes,
        )

    def refresh(self) -> Any:
        """Check and recompile the graph after an edit, re-annotate its nodes; returns outputs."""
        self.module.graph.lint()
        self.module.recompile()
        return annotate(self.module, self.example_inputs)

    # -- reading ------------------------------------------------------------------------------
    @property
    def nodes(self) -> Iterator[fx.Node]:
        return iter(self.module.graph.nodes)

    def node(self, name: str) -> fx.Node:
        for node in self.module.graph.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def info(self, node: fx.Node) -> NodeInfo:
        return info(node)

    def input_nodes(self) -> list[fx.Node]:
        return [n for n in self.module.graph.nodes if n.op == "placeholder"]

    def output_node(self) -> fx.Node:
        return next(n for n in reversed(self.module.graph.nodes) if n.op == "output")

    def compute_nodes(self) -> list[fx.Node]:
        return [n for n in self.module.graph.nodes if n.op in ("call_module", "call_function", "call_method")]

    def stats(self) -> GraphStats:
        tensors = {id(t): t for t in list(self.module.parameters()) + list(self.module.buffers())}
        return GraphStats(
            nodes=len(self.compute_nodes()),
            params=sum(t.numel() for t in tensors.values()),
            param_bytes=sum(t.numel() * t.element_size() for t in tensors.values()),
            flops=sum(info(n).flops for n in self.module.graph.nodes),
        )

    def fusion_groups(self) -> dict[str, list[fx.Node]]:
        """Fusion groups marked by the fusion pass: group id -> its nodes in graph order."""
        groups: dict[str, list[fx.Node]] = {}
        for node in self.module.graph.nodes:
            group = node.meta.get(FUSION_GROUP)
            if group is not None:
                groups.setdefault(group, []).append(node)
        return groups

    def to_networkx(self) -> nx.DiGraph:
        """A DiGraph of node names with each node's facts as attributes, for graph analyses.

        >>> order = list(nx.topological_sort(graph.to_networkx()))
        """
        digraph = nx.DiGraph()
        for node in self.module.graph.nodes:
            facts = info(node)
            digraph.add_node(node.name, op=node.op, kind=facts.kind, shape=facts.shape, flops=facts.flops)
            for user in node.users:
                digraph.add_edge(node.name, user.name)
        return digraph

    def text(self, *, types: bool = False) -> str:
        """A canonical text form, one node a line, for structure tests and dumps.

        Lines read ``name = kind(arg, ...)`` with ``# group`` appended for fused nodes, so a failing
        test prints two graphs that can be read side by side. ``types`` appends each node's output
        dtype and shape (``: float32[1, 784]``), as ``--dump-ir`` writes it.
        """
        lines = []
        for node in self.module.graph.nodes:
            args = ", ".join(_render_arg(a) for a in node.args)
            if node.kwargs:
                args += (", " if args else "") + ", ".join(f"{k}={_render_arg(v)}" for k, v in node.kwargs.items())
            kind = info(node).kind if node.meta.get("graphopt") else node.op
            if node.op == "placeholder":
                line = f"{node.name} = input"
            elif node.op == "output":
                line = f"return {args}"
            elif node.op == "get_attr":
                line = f"{node.name} = constant {node.target}"
            else:
                line = f"{node.name} = {kind}({args})"
            if types and node.op != "output" and node.meta.get("graphopt"):
                line += " : " + ", ".join(
                    _render_type(d, s) for d, s in zip(info(node).dtypes, info(node).shapes, strict=False)
                )
            group = node.meta.get(FUSION_GROUP)
            lines.append(line + (f"  # {group}" if group else ""))
        return "\n".join(lines)


def _render_type(dtype: str, shape: tuple[int, ...]) -> str:
    return f"{dtype.removeprefix('torch.')}[{', '.join(str(d) for d in shape)}]"


def _render_arg(arg: Any) -> str:
    if isinstance(arg, fx.Node):
        return arg.name
    if isinstance(arg, (list, tuple)):
        inner = ", ".join(_render_arg(a) for a in arg)
        return f"[{inner}]"
    return repr(arg)
