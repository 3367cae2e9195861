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

from graphopt.ir import Graph
from graphopt.pass_api import PassResult, on_node, register_pass
from graphopt.passes._layers import (
    emit,
    insert_constant,
    layer_of,
    remove_dead_nodes,
    remove_unused_attributes,
    unused_attributes,
)

#: node.meta key set on the matmul that replaced a Linear: the name of that Linear node.
PRETRANSPOSED_FROM = "pretransposed_from"


@register_pass("pretranspose_weights", reports=("pretransposed", "layout_bytes"))
def pretranspose_weights(graph: Graph) -> PassResult:
    """Replace Linear by matmul with a pre-transposed constant weight (no weight transpose at run time)."""
    already_unused = unused_attributes(graph.module)
    done, layout_bytes = [], 0
    for node in list(graph.module.graph.nodes):
        layer = layer_of(graph.module, node)
        if layer is None or layer.kind != "linear" or not (layer.is_constant("weight") and layer.is_constant("bias")):
            continue
        with on_node(node):
            weight, bias = layer.get("weight"), layer.get("bias")
            assert weight is not None
            transposed = insert_constant(graph.module, weight.t().contiguous(), f"{node.name}_weight_t", before=node)
            result = emit(graph, node, "matmul", layer.input, transposed)
            result.meta[PRETRANSPOSED_FROM] = node.name
            if bias is not None:
                bias_node = insert_constant(graph.module, bias, f"{node.name}_bias", before=node)
                result = emit(graph, node, "add", result, bias_node)
            node.replace_all_uses_with(result)
            graph.module.graph.erase_node(node)
        done.append(node.name)
        layout_bytes += weight.numel() * weight.element_size()
    if done:
        remove_dead_nodes(graph.module)  # the old weight's get_attr nodes
    freed = remove_unused_attributes(graph.module, spare=already_unused)
    details = {"pretransposed": done, "layout_bytes": layout_bytes, "removed_weights": freed}
    return PassResult(graph, changed=bool(done), details=details)
