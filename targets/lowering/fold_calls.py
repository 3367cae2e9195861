"""``FoldConstantCalls``: TVM's ``FoldConstant`` for ``call_tir`` on constants, with one LLVM build.

After legalization every weight transform (a transpose to HWIO, the packing by output-channel tile,
a BN statistic turned into a scale) is a ``call_tir`` on constants. TVM 0.27's ``FoldConstant``
evaluates each by building its PrimFunc alone, once per call: its build cache is keyed by the PrimFunc
with a symbol added after the lookup, so it never hits (336 LLVM builds for regnety_400mf, 7 s of CPU).
This pass finds the same calls first (arguments constants or results of such calls, static output
shape), builds each distinct PrimFunc once, all in one module for the same target (``llvm``, as
``FoldConstant`` does: the same code, so the same constants), and evaluates them in program order.
TVM's ``FoldConstant`` runs after it for the rest.
A module that does not build in one piece is left to ``FoldConstant`` as before.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax
from tvm.ir.expr import Constant

from graphopt.targets.lowering.positive_axes import rewrite_relax_functions

CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def foldable_functions(mod: tvm.IRModule) -> list[tvm.ir.GlobalVar]:
    """The PrimFuncs of every ``call_tir`` whose inputs are constants or folded results, in order."""
    found: dict[str, tvm.ir.GlobalVar] = {}
    for _, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        constant: dict[int, list[Any]] = {}  # hash -> the folded vars (== on a Var builds an expression)
        for block in func.body.blocks if isinstance(func.body, relax.SeqExpr) else []:
            for binding in block.bindings:
                value: Any = getattr(binding, "value", None)
                folded = _is_foldable(mod, value, constant)
                if folded:
                    found.setdefault(value.args[0].name_hint, value.args[0])
                if folded or isinstance(value, Constant):
                    constant.setdefault(hash(binding.var), []).append(binding.var)
    return list(found.values())


def _is_foldable(mod: tvm.IRModule, call: Any, constant: dict[int, list[Any]]) -> bool:
    if not (isinstance(call, relax.Call) and call.op == CALL_TIR and len(call.ty_args) == 1):
        return False
    gvar, args = call.args[0], call.args[1]
    if not (isinstance(gvar, tvm.ir.GlobalVar) and isinstance(mod[gvar], tvm.tirx.PrimFunc)):
        return False
    if len(call.args) > 2 or not isinstance(args, relax.Tuple):  # symbolic-shape arguments: not folded
        return False
    out = call.ty_args[0]
    if not (isinstance(out, relax.TensorType) and isinstance(out.shape, relax.ShapeExpr)):
        return False
    if not all(isinstance(d, tvm.tirx.IntImm) for d in out.shape.values):
        return False
    return all(isinstance(a, Constant) or any(a.same_as(v) for v in constant.get(hash(a), [])) for a in args.fields)


@relax.expr_functor.mutator
class _Folder(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, library: Any) -> None:
        super().__init__(mod)
        self.library = library

    def visit_var_(self, var: relax.Var) -> relax.Expr:
        bound = self.lookup_binding(var)
        return bound if isinstance(bound, Constant) else super().visit_var_(var)

    def visit_dataflow_var_(self, var: relax.DataflowVar) -> relax.Expr:
        bound = self.lookup_binding(var)
        return bound if isinstance(bound, Constant) else super().visit_dataflow_var_(var)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if call.op != CALL_TIR or not isinstance(call.args[0], tvm.ir.GlobalVar) or len(call.args) != 2:
            return call
        function = self.library.get(call.args[0].name_hint)
        args = call.args[1]
        if function is None or not isinstance(args, relax.Tuple):
            return call
        if not all(isinstance(a, Constant) for a in args.fields):
            return call
        out = call.ty_args[0]
        result = tvm.runtime.empty([int(d) for d in out.shape.values], out.dtype, tvm.cpu())
        function(*[a.value for a in args.fields], result)
        return relax.const(result)


class _Library:
    def __init__(self, runtime: Any, names: set[str]) -> None:
        self.runtime, self.names = runtime, names

    def get(self, name: str) -> Any:
        return self.runtime[_symbol(name)] if name in self.names else None


def _symbol(name: str) -> str:
    return f"graphopt_fold_{name}"


@tvm.transform.module_pass(opt_level=0, name="FoldConstantCalls")
class FoldConstantCalls:
    """Evaluate the ``call_tir`` calls on constants with all their PrimFuncs built at once."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        gvars = foldable_functions(mod)
        if not gvars:
            return mod
        funcs = {_symbol(g.name_hint): mod[g].with_attr("global_symbol", _symbol(g.name_hint)) for g in gvars}
        try:
            runtime = tvm.tirx.build(tvm.IRModule(funcs), target=tvm.target.Target("llvm"))
        except Exception:  # TVM raises its own error types: FoldConstant then folds them one by one
            return mod
        library = _Library(runtime, {g.name_hint for g in gvars})
        return relax.transform.DeadCodeElimination()(rewrite_relax_functions(_Folder(mod, library), mod))
