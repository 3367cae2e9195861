"""Choose Linear weight layouts at compile time: pre-transposed, contiguous constants.

``linear(x, W, b)`` multiplies by ``W.T``; a backend either transposes ``W`` on every run or must
notice that it can fold the transpose. This pass does the folding once, here: each Linear with a
compile-time weight becomes ``matmul(x, W_t) + b`` where ``W_t = W.T.contiguous()`` is a new
constant, so the graph (and what ``torch.export`` makes of it for the targets) holds no transpose
of a weight at run time. Convolution weights are left in PyTorch's OIHW layout, which is what
TVM's frontend expects; choosing NHWC/packed conv layouts is the targets' schedule's business.

Both spellings are handled (``nn.Linear`` modules, ``F.linear``/``aten.linear`` with ``get_attr``
weights); a Linear whose weight is computed at run time is left alone. The matmul accumulates in a
different order than ``addmm`` may, so results agree to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import torch
from torch import fx

from graphopt.ir import Graph
from graphopt.pass_api import PassResult, on_node, register_pass
from graphopt.passes._layers import (
    emit,
    insert_constant,
    layer_of,
    remove_unused_attributes,
    unused_attributes,
)
from graphopt.rewrite import Match, Op, Rule, Var, apply_rules

#: node.meta key set on the matmul that replaced a Linear: the name of that Linear node.
PRETRANSPOSED_FROM = "pretransposed_from"


def _constant_linear(match: Match) -> bool:
    layer = layer_of(match.module, match.root)
    return layer is not None and layer.is_constant("weight") and layer.is_constant("bias")


def _matmul_by_transposed(match: Match) -> fx.Node:
    node, layer = match.root, layer_of(match.module, match.root)
    assert layer is not None
    with on_node(node):
        weight, bias = layer.get("weight"), layer.get("bias")
        assert weight is not None
        transposed = insert_constant(match.module, weight.t().contiguous(), f"{node.name}_weight_t", before=node)
        result = emit(match.graph, node, "matmul", match["x"], transposed)
        result.meta[PRETRANSPOSED_FROM] = node.name
        if bias is not None:
            bias_node = insert_constant(match.module, bias, f"{node.name}_bias", before=node)
            result = emit(match.graph, node, "add", result, bias_node)
    return result


def _nbytes(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


RULES = [
    Rule(
        "linear(x, W, b) -> matmul(x, W.T) + b",
        Op("linear", Var("x")),
        replace=_matmul_by_transposed,
        when=_constant_linear,
    )
]


@register_pass("pretranspose_weights", reports=("pretransposed", "layout_bytes"))
def pretranspose_weights(graph: Graph) -> PassResult:
    """Replace Linear by matmul with a pre-transposed constant weight (no weight transpose at run time)."""
    already_unused = unused_attributes(graph.module)
    weight_bytes = {
        node.name: _nbytes(layer.get("weight"))
        for node in graph.module.graph.nodes
        if (layer := layer_of(graph.module, node)) is not None
        and layer.kind == "linear"
        and layer.is_constant("weight")
    }
    apply_rules(graph, RULES)
    done = [n.meta[PRETRANSPOSED_FROM] for n in graph.module.graph.nodes if PRETRANSPOSED_FROM in n.meta]
    done = [name for name in done if name in weight_bytes]  # made by this run, not an earlier one
    layout_bytes = sum(weight_bytes[name] for name in done)
    freed = remove_unused_attributes(graph.module, spare=already_unused)
    details = {"pretransposed": done, "layout_bytes": layout_bytes, "removed_weights": freed}
    return PassResult(graph, changed=bool(done), details=details)
