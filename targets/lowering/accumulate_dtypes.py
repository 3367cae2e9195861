"""Running sums and products in the dtype PyTorch gives them: a bool or integer input accumulates in int64.

``torch.cumsum(mask, -1)`` of a bool mask is an int64 count (transformers' causal-mask code does it to find
packed sequences: ``(position_ids.diff() != 1).cumsum(-1)``). TVM 0.27's frontend passes no dtype, so relax's
``cumsum`` kept bool and the LLVM backend refused to add bools ("Check failed: t.MatchesCode(kDLFloat)"); an
int32 input would have wrapped around where torch's int64 does not. The default passes hid it for GPT-2 (the
mask depends on constants only and was folded away), so it failed at ``O0`` alone. The same holds for
``cumprod`` and the full ``prod``. Here the input is cast to the dtype torch's own shape propagation gives the
node before the op runs, so the sum is computed, not only stored, in that type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from graphopt.targets.lowering.converters import args_of


def torch_dtype(node: fx.Node) -> str | None:
    """The result dtype torch recorded for ``node`` (``"int64"``), or None when it recorded none."""
    value = node.meta.get("val")
    return str(value.dtype).removeprefix("torch.") if isinstance(value, torch.Tensor) else None


def _in_result_dtype(node: fx.Node, importer: Any, x: Any) -> Any:
    """``x`` cast to the node's torch result dtype, where that differs from its own."""
    from tvm import relax

    dtype = torch_dtype(node)
    if dtype is None or dtype == str(x.ty.dtype):
        return x
    return importer.block_builder.emit(relax.op.astype(x, dtype))


def _scan(name: str) -> Callable[[fx.Node, Any], Any]:
    """``cumsum`` / ``cumprod`` along ``dim``, accumulating in torch's result dtype."""

    def convert(node: fx.Node, importer: Any) -> Any:
        from tvm import relax

        args = args_of(node)
        dim: Any = args[1] if len(args) > 1 else node.kwargs["dim"]
        dtype = torch_dtype(node)
        if dtype in ("float16", "bfloat16"):  # torch accumulates a half tensor in float32, rounding once
            wide = relax.op.astype(importer.env[args[0]], "float32")
            return importer.block_builder.emit(relax.op.astype(getattr(relax.op, name)(wide, int(dim)), dtype))
        x = _in_result_dtype(node, importer, importer.env[args[0]])
        return importer.block_builder.emit(getattr(relax.op, name)(x, int(dim)))

    return convert


def convert_prod(node: fx.Node, importer: Any) -> Any:
    """``x.prod()`` over every element, in torch's result dtype (int64 for a bool or integer ``x``)."""
    from tvm import relax

    x = _in_result_dtype(node, importer, importer.env[args_of(node)[0]])
    return importer.block_builder.emit(relax.op.prod(x, axis=None, keepdims=False))


ACCUMULATE_CONVERTERS: dict[str, Callable[[fx.Node, Any], Any]] = {
    "cumsum.default": _scan("cumsum"),
    "cumprod.default": _scan("cumprod"),
    "prod.default": convert_prod,
}
