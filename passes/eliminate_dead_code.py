"""Dead-code elimination: erase nodes whose results nothing uses.

Only side-effect-free nodes go (``fx.Node.is_impure`` keeps in-place ops and other side effects),
so the outputs are bit-identical. Parameters the erased nodes read are left for
``eliminate_dead_weights``, which also reports the bytes that frees.
"""

from __future__ import annotations

from graphopt.ir import Graph
from graphopt.pass_api import PassResult, register_pass
from graphopt.passes._layers import remove_dead_nodes


@register_pass("eliminate_dead_code", reports=("removed_nodes",))
def eliminate_dead_code(graph: Graph) -> PassResult:
    """Erase nodes whose results are never used (bit-identical)."""
    removed = remove_dead_nodes(graph.module)
    return PassResult(graph, changed=bool(removed), details={"removed_nodes": removed})
