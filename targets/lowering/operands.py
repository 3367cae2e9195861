"""A converter's operand in the dtype an op computes in: what ATen's type promotion gives it."""

from __future__ import annotations

from typing import Any

from torch import fx


def operand_as(importer: Any, arg: Any, dtype: str) -> Any:
    """``arg`` (an exported fx node, or a Python number) as a relax value of ``dtype``: the node's value
    cast where its dtype differs (emitted), a number as a constant."""
    from tvm import relax

    if isinstance(arg, fx.Node):
        x = importer.env[arg]
        return x if str(x.ty.dtype) == dtype else importer.block_builder.emit(relax.op.astype(x, dtype))
    return relax.const(arg, dtype)
