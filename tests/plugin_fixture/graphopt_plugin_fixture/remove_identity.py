"""``plugin_remove_identity``: drop ``nn.Identity`` calls. Exact: an identity returns its input."""

from __future__ import annotations

from torch import nn

from graphopt import Graph, PassResult, register_pass


@register_pass("plugin_remove_identity", reports=("removed",))
def remove_identity(graph: Graph, *, keep_first: bool = False) -> PassResult:
    """Remove nn.Identity modules from the graph (a plugin pass from another package)."""
    gm = graph.module
    found = [
        n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(str(n.target)), nn.Identity)
    ]
    removed = found[1:] if keep_first else found
    for node in removed:
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
    return PassResult(graph, changed=bool(removed), details={"removed": len(removed)})
