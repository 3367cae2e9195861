"""A flatten after NHWC layers reads its input in place: the classifier's weight rows are permuted instead.

After ``ConvertLayout`` a CNN runs NHWC, but ``flatten`` (and any reshape feeding a matmul) keeps
PyTorch's NCHW order, so the layout pass puts a transpose back before it: a strided gather of
the whole activation on every call (digits CNN: 2.6 us of its 19 us). The order of a
contraction's reduction axis is free, so ``matmul(reshape(to_nchw(x)), W)`` equals
``matmul(reshape(x'), W[perm])`` where ``x'`` holds the same values in NHWC order and ``perm``
reorders the rows of the constant ``W`` once, at compile time. A reshape into groups (a
horizontally fused ensemble flattens ``(N, G*C_g, H, W)`` into ``(N, G, C_g*H*W)``) still moves
each group's channels out, but as contiguous runs of ``C_g`` values rather than one value at a time.

Only a matmul whose weight is a constant (through broadcast_to/permute_dims) and whose reshape is
read by that matmul alone is rewritten; values change only by the order of the reduction's sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from graphopt.targets.lowering.positive_axes import rewrite_relax_functions

from .packed_weights import static_shape

TO_NCHW = [0, 3, 1, 2]


def _op(expr: Any) -> str:
    return expr.op.name if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else ""


@relax.expr_functor.visitor
class _UseCounter(relax.PyExprVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.uses: dict[Any, int] = {}

    def visit_var_(self, var: relax.Var) -> None:
        self.uses[var] = self.uses.get(var, 0) + 1

    def visit_dataflow_var_(self, var: relax.DataflowVar) -> None:
        self.uses[var] = self.uses.get(var, 0) + 1


@relax.expr_functor.mutator
class _FlattenRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, uses: dict[Any, int]) -> None:
        super().__init__(mod)
        self.uses = uses

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if _op(call) != "relax.matmul":
            return call
        rewritten = self._rewrite(call)
        return call if rewritten is None else rewritten

    def _value(self, expr: Any) -> Any:
        return self.lookup_binding(expr) if isinstance(expr, relax.Var) else None

    def _single_use(self, var: Any) -> bool:
        return isinstance(var, relax.Var) and self.uses.get(var, 0) == 1

    def _rewrite(self, call: relax.Call) -> relax.Expr | None:
        a, b = call.args
        weight = self._constant_rows(b)
        chain = self._activation_chain(a)
        if weight is None or chain is None:
            return None
        reshape_var, x, downstream = chain
        n, h, w, c = static_shape(x)  # type: ignore[misc]
        target = static_shape(reshape_var)
        assert target is not None
        k = target[-1]
        groups = c * h * w // k
        cg = c // groups
        hw = h * w
        index = np.arange(k)
        perm = (index % cg) * hw + index // cg  # new position (hw, c) reads old position (c, hw)
        name = reshape_var.name
        if groups == 1:
            value = self.builder_.emit(relax.op.reshape(x, target), name)
        else:
            split = self.builder_.emit(relax.op.reshape(x, [n, hw, groups, cg]), name)
            moved = self.builder_.emit(relax.op.permute_dims(split, [0, 2, 1, 3]), name)
            value = self.builder_.emit(relax.op.reshape(moved, target), name)
        for var, op_call in downstream:
            value = self.builder_.emit(relax.Call(op_call.op, [value, *op_call.args[1:]], op_call.attrs), var.name)
        return relax.Call(call.op, [value, weight(perm)], call.attrs)

    def _activation_chain(self, a: Any) -> tuple[relax.Var, relax.Expr, list[tuple[relax.Var, relax.Call]]] | None:
        """``a`` as ``ops(reshape(permute_dims(x, TO_NCHW)))`` where each op keeps the last axis last and
        every step is read once: (the reshape's var, x, the ops from the reshape down to ``a``)."""
        downstream: list[tuple[relax.Var, relax.Call]] = []
        var = a
        while True:
            if not self._single_use(var):
                return None
            value = self._value(var)
            op = _op(value)
            if op == "relax.reshape":
                break
            keeps_last = (op == "relax.permute_dims" and _keeps_last(value)) or (
                op == "relax.broadcast_to" and _keeps_last_dim(value)
            )
            if not keeps_last:
                return None
            downstream.insert(0, (var, value))
            var = value.args[0]
        to_nchw = value.args[0]
        permute = self._value(to_nchw)
        if not self._single_use(to_nchw) or _op(permute) != "relax.permute_dims":
            return None
        axes = [int(v) for v in permute.attrs.axes] if permute.attrs.axes is not None else None
        x = permute.args[0]
        shape, target = static_shape(x), static_shape(var)
        if axes != TO_NCHW or shape is None or target is None or len(shape) != 4:
            return None
        n, h, w, c = shape
        k = target[-1]
        if k % (h * w) or c % (k // (h * w)) or c * h * w % k or int(np.prod(target[:-1])) != n * (c * h * w // k):
            return None
        if c * h * w // k > 1 and k // (h * w) == 1:
            return None  # one channel per group: the transpose stays one value at a time, nothing gained
        return var, x, downstream

    def _constant_rows(self, b: Any) -> Any:
        """A function of ``perm`` giving ``b`` with its rows (axis -2) permuted, when ``b`` is a constant
        seen through broadcast_to/permute_dims; else None."""
        steps: list[relax.Call] = []
        expr = b
        shape = static_shape(b)
        if shape is None or len(shape) < 2:
            return None
        axis = len(shape) - 2
        while not isinstance(expr, Constant):
            value = self._value(expr) if isinstance(expr, relax.Var) else expr
            op = _op(value)
            inner = static_shape(value.args[0]) if op else None
            if inner is None:
                return None
            if op == "relax.permute_dims" and value.attrs.axes is not None:
                axis = int(value.attrs.axes[axis])
            elif op == "relax.broadcast_to":
                outer = static_shape(value) or []
                inner_axis = axis - (len(outer) - len(inner))  # broadcast_to prepends the new axes
                if inner_axis < 0 or inner[inner_axis] != outer[axis]:
                    return None  # the rows themselves are broadcast
                axis = inner_axis
            else:
                return None
            steps.insert(0, value)
            expr = value.args[0]
        data = expr.value.numpy()

        def permuted(perm: np.ndarray) -> relax.Expr:
            out: relax.Expr = relax.const(np.take(data, perm, axis=axis), str(data.dtype))
            for step in steps:
                out = self.builder_.emit(relax.Call(step.op, [out, *step.args[1:]], step.attrs))
            return out

        return permuted


def _keeps_last(call: relax.Call) -> bool:
    axes = call.attrs.axes
    return axes is not None and int(axes[-1]) == len(axes) - 1


def _keeps_last_dim(call: relax.Call) -> bool:
    before, after = static_shape(call.args[0]), static_shape(call)
    return before is not None and after is not None and before[-1] == after[-1]


@tvm.transform.module_pass(opt_level=0, name="FlattenIntoWeights")
class FlattenIntoWeights:
    """See the module docstring; run after ``ConvertLayout`` (which makes the NHWC -> NCHW transposes)."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        counter = _UseCounter()
        for _, func in mod.functions_items():
            if isinstance(func, relax.Function):
                counter.visit_expr(func)
        return rewrite_relax_functions(_FlattenRewriter(mod, counter.uses), mod)
