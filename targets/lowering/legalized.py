"""Whether a Relax module still holds high-level ops that ``LegalizeOps`` has yet to turn into TIR.

The library-dispatch passes that run before every target's schedule step (TVM's ``DispatchSortScan``)
replace ``cumsum``, ``sort`` and ``topk`` by TOPI PrimFuncs while every other op stays a high-level
Relax call; "the module has a PrimFunc" then no longer means "the module is legalized and fused".
The schedule steps ask this instead: an op counts as unlegalized when TVM registers a legalization
(``FLegalize``) for it, which ``call_tir`` and the VM builtins that legalized code calls do not have.
"""

from __future__ import annotations

import tvm
from tvm import relax


def unlegalized_ops(mod: tvm.IRModule) -> set[str]:
    """The names of the ops with a legalization still called by ``mod``'s Relax functions."""
    found: set[str] = set()

    def visit(expr: relax.Expr) -> None:
        legalizable = isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)
        if legalizable and expr.op.get_attr("FLegalize") is not None:
            found.add(expr.op.name)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return found


def is_legalized(mod: tvm.IRModule) -> bool:
    """Whether ``mod`` has been legalized to TIR: no op with a legalization is left."""
    return not unlegalized_ops(mod)
