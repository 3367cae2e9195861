"""Dead-weight elimination: drop what no output depends on, and report the bytes saved.

In order: nodes whose results are unused (side-effect-free ones); all-zero output channels of
Conv/Linear layers left by pruning, with the consumers shrunk to match (see ``_zero_channels``);
then parameters, buffers, tensor attributes and submodules that no remaining node reads. A
``call_module`` node reads everything under its module; a ``get_attr`` node reads its target.
"""

from __future__ import annotations

from graphopt.ir import Graph
from graphopt.pass_api import PassResult, register_pass
from graphopt.passes._layers import remove_dead_nodes, remove_unused_attributes, tensor_bytes
from graphopt.passes._zero_channels import shrink_zero_channels


@register_pass(
    "eliminate_dead_weights", reports=("removed_nodes", "removed_weights", "removed_channels", "bytes_saved")
)
def eliminate_dead_weights(graph: Graph, *, prune_zero_channels: bool = True) -> PassResult:
    """Remove unused nodes, weights, buffers and all-zero output channels; report bytes saved."""
    module = graph.module
    before = tensor_bytes(module)
    removed_nodes = remove_dead_nodes(module)
    channels = shrink_zero_channels(graph) if prune_zero_channels else []
    if channels:
        removed_nodes += remove_dead_nodes(module)
    removed_weights = remove_unused_attributes(module)
    saved = before - tensor_bytes(module)
    details = {
        "removed_nodes": removed_nodes,
        "removed_weights": removed_weights,
        "removed_channels": channels,
        "bytes_saved": saved,
    }
    return PassResult(graph, changed=bool(removed_nodes or removed_weights or channels), details=details)
