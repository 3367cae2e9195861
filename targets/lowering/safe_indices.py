"""Make every gather of the lowered module read in bounds, with PyTorch's meaning of a negative index.

TVM 0.27's torch frontend lowers ``x[:, -1]`` (``aten.select``), ``x[idx]`` (``aten.index``) and
``index_select`` to ``relax.take(x, i, mode="fast")``: TOPI's "fast" mode uses ``i`` as it is, so
``-1`` reads the element *before* the tensor (wrong numbers, and an out-of-bounds read). PyTorch reads
``i`` in ``[-n, n)`` as ``i mod n`` and rejects anything else, so on every index PyTorch accepts:

- a constant index is normalized at compile time (``-1`` becomes ``n - 1``) and the take uses
  "clip" mode: the index is then in bounds by construction and the clamp of a constant folds away
  (no run-time cost, and TOPI no longer warns "Fast mode segfaults ...", which it does for any
  "fast" take);
- a run-time index (a tensor computed by the model) uses TOPI's "wrap" mode, ``i mod n``: exactly
  PyTorch's value for every index PyTorch accepts, and in bounds for every other one;
- the indices of ``index_tensor`` (``x[i, j]``) and ``gather_elements`` (``torch.gather``), which
  have no mode, go through ``floor_mod(i, n)`` (non-negative for n > 0), the same rule.

A dimension of unknown (symbolic) size keeps the run-time index as it was, except in ``take``
whose "wrap" mode reads the size at run time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax

from graphopt.targets.lowering.positive_axes import rewrite_relax_functions


def _static_size(expr: relax.Expr, axis: int) -> int | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return None
    dim = shape.values[axis]
    return int(dim.value) if isinstance(dim, tvm.tirx.IntImm) else None


def _normalized_constant(index: relax.Expr, size: int | None) -> tvm.ir.GenericConst | None:
    """``index`` with negative entries shifted by ``size``, if it is a constant then in bounds."""
    if not isinstance(index, tvm.ir.GenericConst) or size is None:
        return None
    values = index.value.numpy()
    shifted = np.where(values < 0, values + size, values).astype(values.dtype)
    if shifted.size and (shifted.min() < 0 or shifted.max() >= size):
        return None
    return relax.const(shifted, str(values.dtype))


def _bounded(index: relax.Expr, size: int | None) -> relax.Expr:
    """``index`` mapped into ``[0, size)`` the way PyTorch reads it (constants folded now)."""
    constant = _normalized_constant(index, size)
    if constant is not None:
        return constant
    if size is None:
        return index
    return relax.op.floor_mod(index, relax.const(size, index.ty.dtype))


@relax.expr_functor.mutator
class _IndexRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = call.op.name if isinstance(call.op, tvm.ir.Op) else None
        if name == "relax.take" and call.attrs.mode == "fast":
            return self._take(call)
        if name == "relax.index_tensor":
            data, indices = call.args
            fields = [_bounded(index, _static_size(data, axis)) for axis, index in enumerate(_fields(indices))]
            return relax.op.index_tensor(data, relax.Tuple(fields))
        if name == "relax.gather_elements":
            data, index = call.args
            axis = int(call.attrs.axis) % data.ty.ndim
            return relax.op.gather_elements(data, _bounded(index, _static_size(data, axis)), axis=axis)
        return call

    def _take(self, call: relax.Call) -> relax.Expr:
        data, index = call.args
        axis = call.attrs.axis
        axis = 0 if axis is None else int(axis) % data.ty.ndim
        constant = _normalized_constant(index, _static_size(data, axis))
        if constant is not None:
            return relax.op.take(data, constant, call.attrs.axis, mode="clip")
        return relax.op.take(data, index, call.attrs.axis, mode="wrap")


def _fields(indices: relax.Expr) -> list[Any]:
    if isinstance(indices, relax.Tuple):
        return list(indices.fields)
    return [relax.TupleGetItem(indices, i) for i in range(len(indices.ty.fields))]


def bound_indices(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every take / index_tensor / gather_elements reading in bounds (module docstring).

    >>> mod = bound_indices(mod)  # x[:, -1]: take(x, 4, axis=1, mode="clip") for an axis of 5
    """
    return relax.transform.Normalize()(rewrite_relax_functions(_IndexRewriter(mod), mod))


def _slice_scatter_in_bounds(
    data: tvm.te.Tensor, src: tvm.te.Tensor, start: Any, end: Any, step: Any, axis: int
) -> tvm.te.Tensor:
    """``data`` with ``src`` written at ``start:end:step`` along ``axis``, reading ``src`` only in bounds."""
    tirx = tvm.tirx
    last = src.shape[axis] - 1

    def element(*index: Any) -> Any:
        position = index[axis]
        inside = tirx.all(position >= start, position < end, tirx.floormod(position - start, step) == 0)
        source = list(index)
        source[axis] = tirx.max(tirx.min(tirx.floordiv(position - start, step), last), 0)
        return tirx.if_then_else(inside, src(*source), data(*index))

    return tvm.te.compute(data.shape, element, name="slice_scatter")


def legalize_slice_scatter(builder: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """``relax.slice_scatter`` (what ``padding_mode="circular"`` lowers to) without TOPI's out-of-bounds read.

    TOPI 0.27's ``slice_scatter`` takes from ``src`` at indices clipped to ``data``'s size along the
    axis, larger than ``src``'s (the values read past ``src`` are masked afterwards, but they are read);
    here the index is clamped to ``src``'s own size. For ``LegalizeOps(customize_legalize_map=...)``.
    """
    data, src, start, end, step = call.args
    return builder.call_te(_slice_scatter_in_bounds, data, src, start, end, step, int(call.attrs.axis))


#: Legalizations the targets use in place of TVM's, for ops whose TOPI kernels read out of bounds.
LEGALIZE_IN_BOUNDS = {"relax.slice_scatter": legalize_slice_scatter}
