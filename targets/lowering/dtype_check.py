"""Catch a node lowered to bool where PyTorch computes numbers, before TVM's backend trips on it.

When a converter keeps a bool dtype where torch's type promotion gives an integer or float (issue 15:
``mask.cumsum(-1)`` of a bool mask, int64 in torch), every op after it does bool arithmetic, and the LLVM
backend stops with "Check failed: (t.MatchesCode(kDLFloat))", naming no op and no line. Comparing each
translated node's relax dtype with the dtype torch recorded for it finds the node at once; the error then
names it, its op and the user's source line, as every other lowering error does.

Only bool-for-a-number is refused: other differences are representation choices of the frontend that later
casts undo, while bool values cannot carry a count or a sum.
"""

from __future__ import annotations

from typing import Any

from torch import fx

from graphopt.targets.lowering.accumulate_dtypes import torch_dtype


def _relax_dtype(value: Any) -> str | None:
    dtype = getattr(getattr(value, "ty", None), "dtype", None)
    return str(dtype) if dtype is not None else None


def bool_for_number(returned: list[tuple[fx.Node, Any]]) -> tuple[fx.Node, str] | None:
    """The first (exported node, torch's dtype) whose lowered value is bool where torch's is not."""
    for node, value in returned:
        wanted = torch_dtype(node)
        if wanted is not None and wanted != "bool" and _relax_dtype(value) == "bool":
            return node, wanted
    return None
