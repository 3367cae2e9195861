"""A batched matmul by one weight broadcast over the batch is one 2-D matmul over all the rows.

torch.export writes a Linear applied to a non-contiguous 3-D input (``nn.MultiheadAttention``'s input
projection, after it transposes ``[B, L, E]`` to ``[L, B, E]``) as ``expand`` + ``bmm``: the weight
``[K, N]`` broadcast to ``[L, K, N]`` and ``L`` matmuls of ``B`` rows each. TVM then runs a batched
matmul on the unpacked weight; at batch 8, ViT-B/16's 12 input projections took half its time
(688 of 1365 ms, 97 GFLOP/s; 1.88x ONNX Runtime's latency, Zen 5, 2 threads). Here
``matmul(A[L, M, K], broadcast_to(W[K, N], [L, K, N]))`` becomes
``reshape(matmul(reshape(A, [L*M, K]), W), [L, M, N])``: the same products summed in the same order,
and a 2-D matmul by a weight, which the CPU target packs (``packed_weights``). A left operand that
is itself a ``broadcast_to`` to its own shape (the same export writes one) is read directly.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax

from graphopt.targets.lowering.positive_axes import rewrite_relax_functions

from .packed_weights import static_shape


@relax.expr_functor.mutator
class _Unbatcher(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.matmul"):
            return call
        a, b = call.args
        weight = self._broadcast_source(b)
        a_shape, b_shape, out = static_shape(a), static_shape(b), static_shape(call)
        if weight is None or a_shape is None or b_shape is None or out is None or len(a_shape) < 3:
            return call
        w_shape = static_shape(weight)
        if w_shape is None or w_shape[-2:] != b_shape[-2:] or any(d != 1 for d in w_shape[:-2]):
            return call
        if len(b_shape) != len(a_shape) or b_shape[:-2] != a_shape[:-2]:
            return call
        source = self._broadcast_source(a)
        if source is not None and static_shape(source) == a_shape:
            a = source
        rows = 1
        for d in a_shape[:-1]:
            rows *= d
        k, n = b_shape[-2:]
        flat = self.builder_.emit(relax.op.reshape(a, [rows, k]))
        w2d = weight if len(w_shape) == 2 else self.builder_.emit(relax.op.reshape(weight, [k, n]))
        product = self.builder_.emit(relax.Call(call.op, [flat, w2d], call.attrs))
        return relax.op.reshape(product, out)

    def _broadcast_source(self, expr: Any) -> relax.Expr | None:
        """What ``expr`` broadcasts, if it is bound to a ``broadcast_to``."""
        if not isinstance(expr, relax.Var):
            return None
        bound = self.lookup_binding(expr)
        if isinstance(bound, relax.Call) and getattr(bound.op, "name", "") == "relax.broadcast_to":
            return bound.args[0]
        return None


@tvm.transform.module_pass(opt_level=0, name="UnbatchBroadcastWeights")
class UnbatchBroadcastWeights:
    """See the module docstring."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_relax_functions(_Unbatcher(mod), mod)
