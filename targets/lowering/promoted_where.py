"""``torch.where(cond, x, y)`` with torch's result dtype for both branches.

torch promotes the branches as it does any binary op: a 0-dim tensor (``torch.tensor(0.0)``, what
ONNX's Where gets for a scalar constant) does not widen a tensor of the same kind, so
``where(mask, fp16_scores, torch.tensor(0.0))`` is float16. TVM's frontend hands both branches to
relax's ``where`` as they are, which refuses a float16 and a float32 operand: the build failed
(ONNX Attention in fp16/bf16: "aten.where.self not supported"). Here each branch is cast to the
node's dtype (``node.meta["val"]``) first; a branch already of that dtype is left as it is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx


def convert_where(node: fx.Node, importer: Any) -> Any:
    from tvm import relax

    condition, x, y = (importer.env[arg] if isinstance(arg, fx.Node) else arg for arg in node.args[:3])
    value = node.meta.get("val")
    dtype = str(value.dtype).removeprefix("torch.") if isinstance(value, torch.Tensor) else None

    def branch(operand: Any) -> Any:
        if not isinstance(operand, relax.Expr):
            return relax.const(operand, dtype)
        if dtype is None or str(operand.ty.dtype) == dtype:
            return operand
        return relax.op.astype(operand, dtype)

    return importer.block_builder.emit(relax.op.where(condition, branch(x), branch(y)))
