"""Softmax and LayerNorm over the last axis, written so that their row reductions vectorize.

TOPI's softmax and layer norm reduce each row with one scalar accumulator, and dlight's CPU
``Reduction`` rule keeps it scalar (its docstring: rfactor does not combine with its compute_at), so
every row is a chain of dependent adds or maxes. A row whose length is not a multiple of the vector
width (ViT's 197 tokens) was worse: its elementwise loops end in a predicated vector, which TVM
scalarizes whole. ViT-B/16's 197 x 197 attention softmax took 1.0 ms (a 128-wide one 0.14 ms).

``RowReductions`` (a Relax pass, before legalization) gives both ops a TE form whose row reductions
keep ``lanes`` partial results, one per vector lane, and finish with the lanes plus the row's tail
(the last ``K % lanes`` elements) in one short scalar loop:

    row_max_lanes[r, l] = max_j x[r, j * lanes + l]            (j < K // lanes: no predicate)
    row_max[r]          = max(row_max_lanes[r, :], x[r, K // lanes * lanes:])

``LaneRowReduction`` (a schedule rule, before dlight's ``Reduction``) runs one row per iteration of
a parallel loop, vectorizes the lane axis of every ``*_lanes`` block, and splits each elementwise
loop into whole vectors and a tail (``loop_partition``), so no vector is predicated.

Numerics: softmax is TOPI's ``fast_softmax`` (the one FastMathTransform picked before): ``fast_exp``
and a division by the row sum, summed in another order. LayerNorm takes two passes (the mean, then
the mean of squared deviations) where TOPI computes E[x^2] - E[x]^2, so it is closer to PyTorch's
(Welford) result, not further. Other axes, dtypes other than float32, symbolic row lengths and rows
shorter than one vector keep TVM's lowering.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, s_tir, te, tirx, topi
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target

from graphopt.targets.lowering.positive_axes import rewrite_relax_functions

from .schedule_simple import _extent, vector_lanes

LANES_SUFFIX = "_lanes"


def _row_reduce(name: str, value: Any, rows: list[Any], length: int, lanes: int, kind: str) -> te.Tensor:
    """``kind`` ("max" or "sum") of ``value(*row, k)`` over ``k < length``, through ``lanes`` partials."""
    reduce = te.max if kind == "max" else te.sum
    whole = length // lanes
    j = te.reduce_axis((0, whole), name="j")
    partial = te.compute(
        (*rows, lanes),
        lambda *i: reduce(value(*i[:-1], j * lanes + i[-1]), axis=j),
        name=name + LANES_SUFFIX,
    )
    t = te.reduce_axis((0, lanes + length % lanes), name="t")

    def finish(*row: Any) -> Any:
        # both operands stay in bounds (a Select evaluates both): lanes first, then the tail
        lane = partial[(*row, te.min(t, lanes - 1))]
        tail = value(*row, whole * lanes + te.max(t - lanes, 0))
        return reduce(tirx.Select(t < lanes, lane, tail), axis=t)

    return te.compute(tuple(rows), finish, name=name)


def softmax_rows(x: te.Tensor, lanes: int) -> te.Tensor:
    """``fast_softmax`` over the last axis with lane-parallel row reductions."""
    *rows, length = x.shape
    length = int(length)
    top = _row_reduce("row_max", lambda *i: x[i], rows, length, lanes, "max")
    exp = topi.fast_exp(te.compute(x.shape, lambda *i: x[i] - top[i[:-1]], name="row_delta"))
    total = _row_reduce("row_sum", lambda *i: exp[i], rows, length, lanes, "sum")
    return te.compute(x.shape, lambda *i: exp[i] / total[i[:-1]], name="softmax_norm")


def layer_norm_rows(x: te.Tensor, gamma: te.Tensor, beta: te.Tensor, epsilon: float, lanes: int) -> te.Tensor:
    """LayerNorm over the last axis: mean, then the mean of squared deviations (two passes)."""
    *rows, length = x.shape
    length = int(length)
    inverse = tirx.const(1.0 / length, x.dtype)
    total = _row_reduce("row_sum", lambda *i: x[i], rows, length, lanes, "sum")
    deviation = te.compute(x.shape, lambda *i: x[i] - total[i[:-1]] * inverse, name="row_deviation")
    squares = _row_reduce("row_squares", lambda *i: deviation[i] * deviation[i], rows, length, lanes, "sum")
    scale = te.compute(
        tuple(rows),
        lambda *r: tirx.const(1.0, x.dtype) / te.sqrt(squares[r] * inverse + tirx.const(epsilon, x.dtype)),
        name="row_rsqrt",
    )
    return te.compute(
        x.shape, lambda *i: deviation[i] * scale[i[:-1]] * gamma[i[-1]] + beta[i[-1]], name="layer_norm_out"
    )


def _static_last_axis(expr: relax.Expr, lanes: int) -> int | None:
    """The last axis's length when it is static, the dtype float32 and the row at least one vector."""
    ty = expr.ty
    shape = getattr(ty, "shape", None)
    if getattr(ty, "dtype", None) != "float32" or shape is None or len(shape) == 0:
        return None
    last = shape[len(shape) - 1]
    return int(last) if isinstance(last, tirx.IntImm) and int(last) >= lanes else None


def _is_last_axis(axes: Any, ndim: int) -> bool:
    values = [int(a) for a in axes] if hasattr(axes, "__len__") else [int(axes)]
    return len(values) == 1 and values[0] % ndim == ndim - 1


@relax.expr_functor.mutator
class _RowRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, lanes: int) -> None:
        super().__init__(mod)
        self.lanes = lanes

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        name = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
        if name not in ("relax.nn.softmax", "relax.nn.layer_norm"):
            return call
        x = call.args[0]
        if _static_last_axis(x, self.lanes) is None:
            return call
        ndim = len(x.ty.shape)
        lanes = self.lanes
        if name == "relax.nn.softmax" and _is_last_axis(call.attrs.axis, ndim):
            return self.builder_.call_te(lambda t: softmax_rows(t, lanes), x, primfunc_name_hint="softmax")
        if name == "relax.nn.layer_norm" and _is_last_axis(call.attrs.axes, ndim):
            attrs = call.attrs
            if not (attrs.center and attrs.scale):
                return call
            epsilon = float(attrs.epsilon)
            return self.builder_.call_te(
                lambda t, g, b: layer_norm_rows(t, g, b, epsilon, lanes),
                x,
                call.args[1],
                call.args[2],
                primfunc_name_hint="layer_norm",
            )
        return call


@tvm.transform.module_pass(opt_level=0, name="RowReductions")
class RowReductions:
    """Softmax and LayerNorm over the last axis in the lane-parallel TE form (module docstring)."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_RowRewriter(mod, self.lanes), mod)


def _vectorize_row(sch: s_tir.Schedule, block: Any, lanes: int) -> None:
    """Whole vectors over the block's innermost loop, the remainder as a separate short loop."""
    loop = sch.get_loops(block)[-1]
    length = _extent(sch, loop)
    if length is None or length < 2:
        return
    if length < lanes:
        sch.vectorize(loop)
        return
    whole = length // lanes * lanes
    if whole != length:
        loop, _tail = sch.loop_partition(loop, factors=[whole, None])
    _, vector = sch.split(loop, factors=[whole // lanes, lanes])
    sch.vectorize(vector)


class LaneRowReduction(CPUScheduleRule):
    """Schedules functions holding ``*_lanes`` blocks (``RowReductions``): one row per parallel
    iteration, lane axes vectorized, elementwise loops as whole vectors plus a tail."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        try:
            blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
        except Exception:  # no root block (a function that is not TensorIR blocks): not ours
            return None
        if not any(sch.get(b).name_hint.endswith(LANES_SUFFIX) for b in blocks):
            return None
        try:
            return _schedule(sch, blocks, vector_lanes(target))
        except Exception:  # an unexpected fused shape: dlight's Reduction schedules it (scalar, correct)
            return None


def _schedule(sch: s_tir.Schedule, blocks: list[Any], lanes: int) -> s_tir.Schedule:
    last = blocks[-1]
    loops = sch.get_loops(last)
    if len(loops) < 2:
        raise ValueError("no row axis")
    rows = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
    sch.parallel(rows)
    for block in reversed(blocks[:-1]):
        sch.compute_at(block, rows, preserve_unit_loops=True)
    for block in blocks[:-1]:
        stmt = sch.get(block)
        if stmt.name_hint.endswith(LANES_SUFFIX):
            lane, chunk = sch.get_loops(block)[-2:]
            sch.reorder(chunk, lane)
            sch.vectorize(lane)
        elif stmt.init is None:
            if len(sch.get_consumers(block)) == 1:
                try:
                    sch.compute_inline(block)
                    continue
                except Exception:  # not inlinable: scheduled as a row of its own
                    pass
            _vectorize_row(sch, block, lanes)
    _vectorize_row(sch, last, lanes)
    return sch
