"""Integer dot-product kernels: int8 matmuls on packed weights, tensorized to AVX-512 VNNI.

``relax.matmul(A, W, out_dtype="int32")`` with A uint8/int8 ``[M, K]`` and W int8 ``[K, N]`` (what
``targets/quantized.py`` emits for a quantized Linear) is legalized here into three steps:

1. ``pack_int8_weight``: W -> ``Wp[N/16, K/4, 16, 4]``, four consecutive k of 16 output channels
   together. W is a constant, so FoldConstant packs it once, at compile time;
2. ``int8_activation``: A -> uint8, K padded to a multiple of 4; int8 A is shifted by +128, and
3. ``int8_dense``: ``C[i, j] = sum_k A[i, k] * Wp[j/16, k/4, j%16, k%4]`` in int32, minus
   ``128 * sum_k W[k, j]`` where A was shifted (exact: ``(a + 128) w - 128 w = a w``).

This is the layout VNNI's ``vpdpbusd`` consumes: one instruction multiplies 4 uint8 activations by
4 int8 weights for 16 output channels and accumulates into 16 int32 lanes. ``Int8DotProduct`` (a
dlight rule, first in ``schedule_cpu.default_rules``) tensorizes ``int8_dense`` with it on CPUs
that have ``avx512vnni``; elsewhere it declines and the generic rules schedule the same compute.
Other matmuls keep TVM's own legalization.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, s_tir, te, tirx
from tvm.s_tir import dlight
from tvm.s_tir.tensor_intrin import x86
from tvm.script import tirx as T

LANES, GROUP = 16, 4  # output channels per vector, k values per 32-bit lane
DENSE_BLOCK = "int8_dense"
VNNI_INTRIN = "graphopt_dot_16x4_u8i8i32_vnni"


@T.prim_func(s_tir=True)
def _dot_16x4_vnni(
    a: T.Buffer((4,), "uint8", offset_factor=1),
    b: T.Buffer((16, 4), "int8", offset_factor=1),
    c: T.Buffer((16,), "int32", offset_factor=1),
) -> None:
    # TVM's own dot_16x4_vnni passes int32x16 operands; LLVM 17+ declares vpdpbusd on <64 x i8>.
    with T.sblock("root"):
        T.reads(c[0:16], a[0:4], b[0:16, 0:4])
        T.writes(c[0:16])
        a_i32 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
        c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            c.vload([0], dtype="int32x16"),
            T.reinterpret(T.broadcast(a_i32, 16), dtype="int8x64"),
            b.vload([0, 0], dtype="int8x64"),
            dtype="int32x16",
        )


s_tir.TensorIntrin.register(VNNI_INTRIN, x86.dot_product_16x4_u8i8i32_desc, _dot_16x4_vnni, override=True)


def _static_shape(expr: relax.Expr) -> list[int] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not all(isinstance(d, tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def _eligible(call: relax.Call) -> bool:
    a, w = call.args
    a_shape, w_shape = _static_shape(a), _static_shape(w)
    return (
        call.attrs.out_dtype == "int32"
        and a.ty.dtype in ("uint8", "int8")
        and w.ty.dtype == "int8"
        and a_shape is not None
        and w_shape is not None
        and len(a_shape) == 2
        and len(w_shape) == 2
        and w_shape[1] % LANES == 0
    )


def _padded(k: int) -> int:
    return (k + GROUP - 1) // GROUP * GROUP


def pack_weight(w: te.Tensor) -> te.Tensor:
    k, n = (int(d) for d in w.shape)
    shape = (n // LANES, _padded(k) // GROUP, LANES, GROUP)

    def packed(jo: Any, ko: Any, ji: Any, ki: Any) -> Any:
        row = ko * GROUP + ki
        return tirx.if_then_else(row < k, w[tirx.min(row, k - 1), jo * LANES + ji], tirx.const(0, "int8"))

    return te.compute(shape, packed, name="pack_int8_weight")


def unsigned_activation(a: te.Tensor) -> te.Tensor:
    m, k = (int(d) for d in a.shape)
    shift = 128 if a.dtype == "int8" else 0

    def value(i: Any, kk: Any) -> Any:
        inside = (a[i, tirx.min(kk, k - 1)].astype("int32") + shift).astype("uint8")
        return tirx.if_then_else(kk < k, inside, tirx.const(0, "uint8"))

    return te.compute((m, _padded(k)), value, name="int8_activation")


def dense(a: te.Tensor, wp: te.Tensor) -> te.Tensor:
    m, k4 = (int(d) for d in a.shape)
    n = int(wp.shape[0]) * LANES
    k = te.reduce_axis((0, k4), name="k")
    return te.compute(
        (m, n),
        lambda i, j: te.sum(
            a[i, k].astype("int32") * wp[j // LANES, k // GROUP, j % LANES, k % GROUP].astype("int32"), axis=k
        ),
        name=DENSE_BLOCK,
    )


def _column_offsets(w: te.Tensor) -> te.Tensor:
    k = te.reduce_axis((0, int(w.shape[0])), name="k")
    return te.compute((int(w.shape[1]),), lambda j: te.sum(w[k, j].astype("int32") * 128, axis=k), name="shift_sums")


_DEFAULT_LEGALIZE = tvm.ir.Op.get("relax.matmul").get_attr("FLegalize")


def legalize_matmul(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """int8 matmuls through packed weights (see the module docstring); others as TVM does."""
    if not _eligible(call):
        return _DEFAULT_LEGALIZE(bb, call)
    a, w = call.args
    packed = bb.emit_te(pack_weight, w, primfunc_name_hint="pack_int8_weight")
    activation = bb.emit_te(unsigned_activation, a, primfunc_name_hint="int8_activation")
    result = bb.emit_te(dense, activation, packed, primfunc_name_hint=DENSE_BLOCK)
    if a.ty.dtype == "int8":
        offsets = bb.emit_te(_column_offsets, w, primfunc_name_hint="int8_shift_sums")
        result = bb.emit_te(
            lambda c, o: te.compute(c.shape, lambda i, j: c[i, j] - o[j], name="unshift"), result, offsets
        )
    return result


tvm.ir.register_op_attr("relax.matmul", "FLegalize", legalize_matmul, level=11)


def has_vnni(target: tvm.target.Target) -> bool:
    if target.kind.name != "llvm":
        return False
    try:
        return bool(tvm.target.codegen.llvm_cpu_has_features(["avx512vnni"], target))
    except Exception:  # an LLVM without this query: assume no
        return False


class Int8DotProduct(dlight.ScheduleRule):
    """Tile ``int8_dense`` 16 rows x 16 channels and tensorize its 16x4 core with ``vpdpbusd``."""

    def apply(self, func: tirx.PrimFunc, target: tvm.target.Target, _: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not has_vnni(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        names = [sch.get(b).name_hint for b in blocks]
        if DENSE_BLOCK not in names or names.index(DENSE_BLOCK) != 0:
            return None  # not ours, or with producers fused in front of it
        block, epilogue = blocks[0], blocks[1:]
        i, j, k = sch.get_loops(block)
        rows = next(r for r in (16, 8, 4, 2, 1) if _extent(sch, i) % r == 0)
        i_outer, i_inner = sch.split(i, [None, rows])
        j_outer, j_inner = sch.split(j, [None, LANES])
        k_outer, k_inner = sch.split(k, [None, GROUP])
        sch.reorder(j_outer, i_outer, k_outer, i_inner, j_inner, k_inner)
        outer = sch.fuse(j_outer, i_outer)
        sch.parallel(outer)
        for consumer in epilogue:
            sch.reverse_compute_at(consumer, outer)
            _vectorize_inner(sch, consumer)
        init = sch.decompose_reduction(block, k_outer)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(j_inner, VNNI_INTRIN)
        sch.unroll(i_inner)
        return sch


def _extent(sch: s_tir.Schedule, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _vectorize_inner(sch: s_tir.Schedule, block: Any) -> None:
    loops = sch.get_loops(block)
    if len(loops) > 1:
        sch.vectorize(loops[-1])
