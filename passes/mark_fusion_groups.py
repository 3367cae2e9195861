"""Mark fusion groups: the nodes a target should lower as one kernel.

Two shapes of group, each a straight chain where every node but the last has exactly one user
(the next node), so no intermediate result is needed outside the kernel:

- an anchor (conv1d/2d/3d, linear, matmul) followed by its epilogue: a bias add (an add of a
  constant), then elementwise ops (ReLU, ReLU6, GELU, SiLU, sigmoid, tanh, hardswish, ... and an
  add of a residual). Pattern names read ``conv2d+bias+add+relu``; ``+bias`` is named when the
  anchor carries a bias or a constant add follows it.
- a chain of two or more elementwise ops with no anchor (``mul+add+relu``).

Groups are recorded in ``node.meta[ir.FUSION_GROUP]`` ("group_0", ...) and
``node.meta[ir.FUSION_PATTERN]``; the graph itself is unchanged and runs in PyTorch as before.
Re-running the pass recomputes the same groups (and reports no change).

No target reads these marks: TVM's FuseOps forms the kernels. The marks are a checked statement
of what fuses (shown by the viewer and the reports): tests/targets/test_fusion_groups.py fails if
an anchor group does not become exactly one fused kernel on the cpu target.
"""

from __future__ import annotations

from collections import Counter

from torch import fx

from graphopt import ir
from graphopt.ir import Graph
from graphopt.op_kinds import ELEMENTWISE, op_kind
from graphopt.pass_api import PassResult, register_pass
from graphopt.passes._layers import layer_of, only_user

ANCHORS = frozenset({"conv1d", "conv2d", "conv3d", "linear", "matmul"})
EPILOGUE = ELEMENTWISE | {"relu6", "gelu", "silu", "hardswish", "hardsigmoid", "leaky_relu"}


def _has_bias(graph: Graph, node: fx.Node) -> bool:
    layer = layer_of(graph.module, node)
    if layer is None:
        return op_kind(graph.module, node) == "linear" and node.op == "call_function" and len(node.args) > 2
    try:
        return layer.get("bias") is not None
    except ValueError:
        return True  # a bias computed at run time is still a bias


def _is_constant_add(graph: Graph, node: fx.Node, previous: fx.Node) -> bool:
    others = [a for a in node.args if a is not previous]
    return op_kind(graph.module, node) == "add" and all(
        not isinstance(a, fx.Node) or a.op == "get_attr" for a in others
    )


def _epilogue(graph: Graph, start: fx.Node, claimed: set[fx.Node]) -> list[fx.Node]:
    chain, current = [], start
    while (user := only_user(current)) is not None and op_kind(graph.module, user) in EPILOGUE:
        if current not in user.args or user in claimed:
            break
        chain.append(user)
        current = user
    return chain


def _groups(graph: Graph) -> list[tuple[list[fx.Node], str]]:
    groups = []
    claimed: set[fx.Node] = set()
    for node in graph.module.graph.nodes:
        kind = op_kind(graph.module, node)
        if node in claimed or node.op not in ("call_module", "call_function", "call_method"):
            continue
        if kind not in ANCHORS and kind not in EPILOGUE:
            continue
        members = [node, *_epilogue(graph, node, claimed)]
        names = [op_kind(graph.module, n) for n in members]
        if kind in ANCHORS:
            bias_add = len(members) > 1 and _is_constant_add(graph, members[1], node)
            if bias_add:
                names[1] = "bias"
            elif _has_bias(graph, node):
                names.insert(1, "bias")
        if len(members) >= 2:
            groups.append((members, "+".join(names)))
            claimed.update(members)
    return groups


@register_pass("mark_fusion_groups", reports=("groups", "patterns"))
def mark_fusion_groups(graph: Graph) -> PassResult:
    """Mark Conv/Linear/MatMul + bias + elementwise epilogues and elementwise chains as fusion groups."""
    before = {n.name: (n.meta.get(ir.FUSION_GROUP), n.meta.get(ir.FUSION_PATTERN)) for n in graph.nodes}
    for node in graph.nodes:
        node.meta.pop(ir.FUSION_GROUP, None)
        node.meta.pop(ir.FUSION_PATTERN, None)
    patterns: Counter[str] = Counter()
    for index, (members, pattern) in enumerate(_groups(graph)):
        for member in members:
            member.meta[ir.FUSION_GROUP] = f"group_{index}"
            member.meta[ir.FUSION_PATTERN] = pattern
        patterns[pattern] += 1
    after = {n.name: (n.meta.get(ir.FUSION_GROUP), n.meta.get(ir.FUSION_PATTERN)) for n in graph.nodes}
    details = {"groups": sum(patterns.values()), "patterns": dict(patterns)}
    return PassResult(graph, changed=before != after, details=details)
