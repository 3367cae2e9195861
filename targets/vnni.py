"""``Int8DotProduct``: the schedule rule that runs ``int8_dense`` (targets/int8_kernels.py) on VNNI.

Each output tile is ``rows`` pixels (or matrix rows) x 16 channels; its ``k`` loop steps by 4 and
its 16x4 core is one ``vpdpbusd`` (uint8 x int8 -> int32, 16 lanes). The rows are unrolled, so a
tile keeps ``rows`` accumulators in vector registers for the whole reduction. Channel tiles are the
outer loop, fused with the pixel tiles and run in parallel; the epilogue (shift correction,
dequantize scale, bias, ReLU) runs per tile on data still in registers/L1.

The rule declines on CPUs without ``avx512vnni`` (the generic rules then schedule the same compute).
The tensor intrinsic is declared here rather than taken from ``tvm.s_tir.tensor_intrin``, whose
import parses several hundred TVMScript functions (about a minute here).
"""

from __future__ import annotations

import functools
from typing import Any

import tvm
from graphopt.targets.int8_kernels import DENSE_BLOCK, GROUP, LANES
from tvm import s_tir, tirx
from tvm.s_tir import dlight

VNNI_INTRIN = "graphopt_dot_16x4_u8i8i32_vnni"
ROW_TILES = (16, 14, 12, 8, 7, 6, 4, 2, 1)  # accumulators per tile: one 16-lane register each


@functools.cache
def register_intrinsic() -> str:
    """Register ``VNNI_INTRIN`` (once, on first use) and return its name."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def description(
        a: T.Buffer((4,), "uint8", offset_factor=1),
        b: T.Buffer((16, 4), "int8", offset_factor=1),
        c: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def implementation(
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

    s_tir.TensorIntrin.register(VNNI_INTRIN, description, implementation, override=True)
    return VNNI_INTRIN


def has_vnni(target: tvm.target.Target) -> bool:
    if target.kind.name != "llvm":
        return False
    try:
        return bool(tvm.target.codegen.llvm_cpu_has_features(["avx512vnni"], target))
    except Exception:  # an LLVM without this query: assume no
        return False


class Int8DotProduct(dlight.ScheduleRule):
    """Tile ``int8_dense`` rows x 16 channels and tensorize its 16x4 core with ``vpdpbusd``."""

    def apply(self, func: tirx.PrimFunc, target: tvm.target.Target, _: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not has_vnni(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        names = [sch.get(b).name_hint for b in blocks]
        if DENSE_BLOCK not in names or names.index(DENSE_BLOCK) != 0:
            return None  # not ours, or with producers fused in front of it
        block, epilogue = blocks[0], blocks[1:]
        loops = sch.get_loops(block)  # matmul: (i, j, k); NHWC conv: (b, oh, ow, j, kh, kw, c)
        reductions = sum(1 for v in sch.get(block).iter_vars if v.iter_type == tirx.IterVar.CommReduce)
        *leading, i, j = loops[:-reductions]
        *taps, k = loops[-reductions:]
        rows = next(r for r in ROW_TILES if _extent(sch, i) % r == 0)
        i_outer, i_inner = sch.split(i, [None, rows])
        j_outer, j_inner = sch.split(j, [None, LANES])
        k_outer, k_inner = sch.split(k, [None, GROUP])
        sch.reorder(j_outer, *leading, i_outer, *taps, k_outer, i_inner, j_inner, k_inner)
        outer = sch.fuse(j_outer, *leading, i_outer)
        sch.parallel(outer)
        for consumer in epilogue:
            sch.reverse_compute_at(consumer, outer)
            _vectorize_inner(sch, consumer)
        init = sch.decompose_reduction(block, taps[0] if taps else k_outer)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(j_inner, register_intrinsic())
        sch.unroll(i_inner)
        return sch


def _extent(sch: s_tir.Schedule, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _vectorize_inner(sch: s_tir.Schedule, block: Any) -> None:
    loops = sch.get_loops(block)
    if len(loops) > 1 and _extent(sch, loops[-1]) <= 4 * LANES:
        sch.vectorize(loops[-1])
