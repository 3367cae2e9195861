"""``mm`` / ``bmm`` / ``addmm`` of float64 and integer tensors in their own dtype, not float32.

TVM 0.27's torch frontend fixes ``out_dtype="float32"`` on these converters, so a product of doubles
lost precision and came out float32 (ONNX MatMul/Einsum on doubles), and one of integers came out
float32. Here the product accumulates in the node's dtype (``node.meta["val"]``, what torch computes).
float32 nodes are left to TVM's converter (None), as are float16/bfloat16 ones, which
``half_opmath.in_float32`` computes in float32 and rounds once, as torch does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx

#: Dtypes whose product TVM's converter already gets right, or that ``half_opmath`` handles.
_LEFT_TO_FRONTEND = (torch.float32, torch.float16, torch.bfloat16, torch.bool)


def _own_dtype(node: fx.Node) -> str | None:
    """The node's dtype where TVM's float32 ``out_dtype`` would change it, else None."""
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor) or value.dtype in _LEFT_TO_FRONTEND:
        return None
    return str(value.dtype).removeprefix("torch.")


def typed_matmul(node: fx.Node, importer: Any, a: fx.Node, b: fx.Node) -> Any:
    """``a @ b`` in the node's dtype (``mm``, ``bmm``), or None where TVM's converter is right."""
    from tvm import relax

    dtype = _own_dtype(node)
    if dtype is None:
        return None
    return importer.block_builder.emit(relax.op.matmul(importer.env[a], importer.env[b], out_dtype=dtype))


def typed_addmm(node: fx.Node, importer: Any) -> Any:
    """``beta * bias + alpha * (a @ b)`` in the node's dtype, or None where TVM's converter is right."""
    from tvm import relax

    dtype = _own_dtype(node)
    if dtype is None:
        return None
    bias, a, b = node.args[:3]
    alpha, beta = node.kwargs.get("alpha", 1), node.kwargs.get("beta", 1)

    def scaled(value: Any, factor: Any) -> Any:
        return value if factor == 1 else relax.op.multiply(value, relax.const(factor, dtype))

    total = scaled(relax.op.matmul(importer.env[a], importer.env[b], out_dtype=dtype), alpha)
    if beta != 0:
        total = relax.op.add(total, scaled(importer.env[bias], beta))
    return importer.block_builder.emit(total)
