"""``ArmDotProduct``: the schedule rule that runs ``int8_dense`` (targets/int8_kernels.py) on Arm ``sdot``.

On an aarch64 target with the dot-product extension (``mattr`` ``+dotprod``, or an ``mcpu`` that has
it: Cortex-A55/A76 and later), ``int8_kernels`` makes the activations int8 (uint8 ones shifted by
-128, corrected by ``+128 * colsum(W)``), because ``sdot`` multiplies signed by signed: one
instruction adds, to each of 4 int32 lanes, the dot product of 4 int8 activations (the same 4 for
every lane) with 4 int8 weights of that lane's output channel. In the packed weight
``Wp[N/16, K/4, 16, 4]`` those 4 channels x 4 k are 16 contiguous bytes, one NEON register.

Each output tile is ``rows`` matrix rows (or conv pixels) x 16 channels; the 16 channels are 4
vectors of 4, and each 4x4 core is one ``sdot``. The rows are unrolled, so a tile keeps
``rows * 4`` accumulators in NEON registers for the whole ``k`` loop (at most 6 rows: 24
accumulators, 4 weight registers and the broadcast activations within NEON's 32). Channel tiles
are the outer loop, fused with the row tiles and run in parallel; the epilogue (shift correction,
dequantize scale, bias, ReLU) runs per tile.

The rule declines on targets without aarch64 + dotprod (the generic rules then schedule the same
compute). The tensor intrinsic is declared here, after TVM's ``get_dotprod_intrin``
(``tvm/s_tir/tensor_intrin/arm_cpu.py``), rather than imported from ``tvm.s_tir.tensor_intrin``,
whose import parses several hundred TVMScript functions (see targets/vnni.py).
"""

from __future__ import annotations

import functools
from typing import Any

import tvm
from graphopt.targets.int8_kernels import DENSE_BLOCK, GROUP, LANES
from tvm import s_tir, tirx
from tvm.s_tir import dlight

SDOT_INTRIN = "graphopt_dot_4x4_i8i8i32_sdot"
VECTOR = 4  # int32 lanes of one NEON register: output channels per sdot
ROW_TILES = (6, 5, 4, 3, 2, 1)  # rows x 4 accumulators each, within 32 NEON registers


@functools.cache
def register_intrinsic() -> str:
    """Register ``SDOT_INTRIN`` (once, on first use) and return its name."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def description(
        a: T.Buffer((4,), "int8", offset_factor=1),
        b: T.Buffer((4, 4), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:4], a[0:4], b[0:4, 0:4])
            T.writes(c[0:4])
            for i in T.serial(0, 4):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def implementation(
        a: T.Buffer((4,), "int8", offset_factor=1),
        b: T.Buffer((4, 4), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:4], a[0:4], b[0:4, 0:4])
            T.writes(c[0:4])
            a_i32 = T.reinterpret(a.vload([0], "int8x4"), dtype="int32")
            c[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
                c.vload([0], dtype="int32x4"),
                T.reinterpret(T.broadcast(a_i32, 4), dtype="int8x16"),
                b.vload([0, 0], dtype="int8x16"),
                dtype="int32x4",
            )

    s_tir.TensorIntrin.register(SDOT_INTRIN, description, implementation, override=True)
    return SDOT_INTRIN


def has_arm_dotprod(target: tvm.target.Target) -> bool:
    """Whether ``target`` is aarch64 with the dot-product extension (``+dotprod`` or an mcpu with it)."""
    if target.kind.name != "llvm" or not str(target.attrs.get("mtriple", "")).startswith(("aarch64", "arm64")):
        return False
    try:
        return bool(tvm.target.codegen.llvm_cpu_has_features(["dotprod"], target))
    except Exception:  # an LLVM without this query: trust mattr
        return "+dotprod" in [str(feature) for feature in target.attrs.get("mattr", [])]


class ArmDotProduct(dlight.ScheduleRule):
    """Tile ``int8_dense`` rows x 16 channels and tensorize each 4-channel x 4-k core with ``sdot``."""

    def apply(self, func: tirx.PrimFunc, target: tvm.target.Target, _: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not has_arm_dotprod(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        names = [sch.get(b).name_hint for b in blocks]
        if DENSE_BLOCK not in names or names.index(DENSE_BLOCK) != 0:
            return None  # not ours, or with producers fused in front of it
        block, epilogue = blocks[0], blocks[1:]
        if any(region.source.dtype != "int8" for region in sch.get(block).reads):
            return None  # uint8 activations: the generic rules (int8_kernels shifts them for sdot)
        loops = sch.get_loops(block)  # matmul: (i, j, k); NHWC conv: (b, oh, ow, j, kh, kw, c)
        reductions = sum(1 for v in sch.get(block).iter_vars if v.iter_type == tirx.IterVar.CommReduce)
        *leading, i, j = loops[:-reductions]
        *taps, k = loops[-reductions:]
        rows = next(r for r in ROW_TILES if _extent(sch, i) % r == 0)
        i_outer, i_inner = sch.split(i, [None, rows])
        j_outer, j_vectors, j_lanes = sch.split(j, [None, LANES // VECTOR, VECTOR])
        k_outer, k_inner = sch.split(k, [None, GROUP])
        sch.reorder(j_outer, *leading, i_outer, *taps, k_outer, i_inner, j_vectors, j_lanes, k_inner)
        outer = sch.fuse(j_outer, *leading, i_outer)
        sch.parallel(outer)
        for consumer in epilogue:
            sch.reverse_compute_at(consumer, outer)
            _vectorize_inner(sch, consumer, 4 * LANES)
        init = sch.decompose_reduction(block, taps[0] if taps else k_outer)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(j_lanes, register_intrinsic())
        sch.unroll(j_vectors)
        sch.unroll(i_inner)
        return sch


def _extent(sch: s_tir.Schedule, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _vectorize_inner(sch: s_tir.Schedule, block: Any, limit: int) -> None:
    loops = sch.get_loops(block)
    if len(loops) > 1 and _extent(sch, loops[-1]) <= limit:
        sch.vectorize(loops[-1])
