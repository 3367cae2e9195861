"""Write every negative axis attribute of a Relax module as the positive axis it means.

TVM 0.27's ``relax.transform.ConvertLayout`` aborts with ``std::bad_alloc`` on a negative axis
(``squeeze(x, axis=[-2])``, what ``nn.MultiheadAttention``'s packed in-projection lowers to; found in
issue 14, where every ``nn.TransformerEncoderLayer`` failed to build although it has no
convolution). A negative axis ``a`` of an op on a rank-``r`` tensor means ``a + r``, so rewriting it
changes nothing else: the op, its operands and its result type stay as they were.

Which rank ``r`` is: the operand's (the first argument, or the first field of a tuple operand such
as ``concat``'s), except for the ops that insert axes, ``stack`` and ``expand_dims``, whose axes
count in the result's rank. Every attribute named ``axis`` or ``axes`` is rewritten, on every op.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax

#: Ops whose axes index the result: how many dimensions each inserts, given its attributes.
_INSERTED_DIMS = {"relax.stack": lambda attrs: 1, "relax.expand_dims": lambda attrs: len(attrs.axis)}
_AXIS_FIELDS = ("axis", "axes")


def rewrite_relax_functions(rewriter: relax.PyExprMutator, mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every Relax function passed through ``rewriter`` (a ``PyExprMutator`` on ``mod``)."""
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    return rewriter.builder_.get()


def _rank(expr: Any) -> int | None:
    ty = getattr(expr, "ty", None)
    if isinstance(ty, relax.TupleType):
        ty = ty.fields[0] if len(ty.fields) else None
    ndim = getattr(ty, "ndim", -1)
    return ndim if isinstance(ndim, int) and ndim >= 0 else None


def _positive(value: Any, rank: int) -> Any:
    """``value`` (an int, an IntImm or an array of them) with negative entries shifted by ``rank``."""
    if isinstance(value, (int, tvm.tirx.IntImm)):
        number = int(value)
        return number + rank if number < 0 else number
    return [_positive(item, rank) for item in value]


def _is_negative(value: Any) -> bool:
    if isinstance(value, (int, tvm.tirx.IntImm)):
        return int(value) < 0
    return value is not None and not isinstance(value, str) and any(_is_negative(item) for item in value)


@relax.expr_functor.mutator
class _AxisRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.attrs is None or not call.args:
            return call
        info = type(call.attrs).__tvm_ffi_type_info__
        names = [field.name for field in info.fields]
        negative = [name for name in _AXIS_FIELDS if name in names and _is_negative(getattr(call.attrs, name))]
        rank = _rank(call.args[0])
        if not negative or rank is None:
            return call
        if call.op.name in _INSERTED_DIMS:
            rank += _INSERTED_DIMS[call.op.name](call.attrs)
        fields = {name: getattr(call.attrs, name) for name in names}
        fields.update({name: _positive(fields[name], rank) for name in negative})
        attrs = tvm.ir.make_node(info.type_key, **fields)
        return relax.Call(call.op, call.args, attrs, call.ty_args)


@tvm.transform.module_pass(opt_level=0, name="PositiveAxes")
class PositiveAxes:
    """Every ``axis`` / ``axes`` attribute non-negative (module docstring), before ConvertLayout."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_AxisRewriter(mod), mod)
