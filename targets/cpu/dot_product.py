"""``DotProductRule``: the schedule shared by the integer dot-product rules (targets/cpu/vnni.py, arm/dot.py).

``int8_dense`` (targets/cpu/int8_kernels.py) reads packed weights ``Wp[N/16, K/4, 16, 4]``; one
dot-product instruction consumes 4 consecutive k of ``vector`` output channels (VNNI: 16,
Arm ``sdot``: 4). Each output tile is ``rows`` matrix rows (or conv pixels) x 16 channels, the
16 channels split into ``16 / vector`` instruction-wide vectors; the rows and vectors are
unrolled, so the tile's accumulators stay in registers for the whole reduction. Channel tiles are
the outer loop, fused with the row tiles and run in parallel; the epilogue (shift correction,
dequantize scale, bias, ReLU) runs per tile on data still in registers or L1.

A subclass says where it applies (``available``), which instruction (``intrinsic``), how wide it
is (``vector``), how many rows fit the register file (``row_tiles``) and which blocks it takes
(``accepts``). It declines anything else, and the generic rules schedule the same compute.
"""

from __future__ import annotations

import functools
from typing import Any

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import dlight

from graphopt.targets.cpu.int8_kernels import DENSE_BLOCK, GROUP, LANES


@functools.cache
def register_dot_intrinsic(name: str, lanes: int, a_dtype: str, llvm_intrinsic: str) -> str:
    """Register (once) the tensor intrinsic ``C[i] += sum_k A[k] * B[i, k]``, ``i < lanes``, ``k < 4``,
    int32 accumulators, as one call of ``llvm_intrinsic(C, the 4 bytes of A in every lane, B)``
    (VNNI ``vpdpbusd``: 16 lanes, uint8 A; Arm ``sdot``: 4 lanes, int8 A); return ``name``.
    Declared here rather than taken from ``tvm.s_tir.tensor_intrin``, whose import parses several
    hundred TVMScript functions (~20 s)."""
    from tvm.script import tirx as T

    a_x4, bytes_type, acc_type = f"{a_dtype}x4", f"int8x{4 * lanes}", f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def description(a_ptr: T.handle, b_ptr: T.handle, c_ptr: T.handle) -> None:
        a = T.match_buffer(a_ptr, (4,), a_dtype, offset_factor=1)
        b = T.match_buffer(b_ptr, (lanes, 4), "int8", offset_factor=1)
        c = T.match_buffer(c_ptr, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:4], b[0:lanes, 0:4])
            T.writes(c[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def implementation(a_ptr: T.handle, b_ptr: T.handle, c_ptr: T.handle) -> None:
        a = T.match_buffer(a_ptr, (4,), a_dtype, offset_factor=1)
        b = T.match_buffer(b_ptr, (lanes, 4), "int8", offset_factor=1)
        c = T.match_buffer(c_ptr, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:4], b[0:lanes, 0:4])
            T.writes(c[0:lanes])
            a_i32 = T.reinterpret(a.vload([0], a_x4), dtype="int32")
            c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_intrinsic),
                c.vload([0], dtype=acc_type),
                T.reinterpret(T.broadcast(a_i32, lanes), dtype=bytes_type),
                b.vload([0, 0], dtype=bytes_type),
                dtype=acc_type,
            )

    s_tir.TensorIntrin.register(name, description, implementation, override=True)
    return name


class DotProductRule(dlight.ScheduleRule):
    """Tile ``int8_dense`` rows x 16 channels; tensorize each ``vector`` x 4 core with ``intrinsic()``."""

    vector: int = LANES
    row_tiles: tuple[int, ...] = (1,)

    def available(self, target: tvm.target.Target) -> bool:
        raise NotImplementedError

    def intrinsic(self) -> str:
        raise NotImplementedError

    def accepts(self, sch: s_tir.Schedule, block: Any) -> bool:
        return True

    def apply(self, func: tirx.PrimFunc, target: tvm.target.Target, _: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.available(target):
            return None
        if not has_root_block(func):
            return None  # a hand-written kernel (TOPI's scans, ir_builder): not an int8_dense
        sch = s_tir.Schedule(func)
        blocks = sch.get_child_blocks(sch.get_sblock("root"))
        names = [sch.get(b).name_hint for b in blocks]
        if DENSE_BLOCK not in names or names.index(DENSE_BLOCK) != 0:
            return None  # not ours, or with producers fused in front of it
        block, epilogue = blocks[0], blocks[1:]
        if not self.accepts(sch, block):
            return None
        loops = sch.get_loops(block)  # matmul: (i, j, k); NHWC conv: (b, oh, ow, j, kh, kw, c)
        reductions = sum(1 for v in sch.get(block).iter_vars if v.iter_type == tirx.IterVar.CommReduce)
        *leading, i, j = loops[:-reductions]
        *taps, k = loops[-reductions:]
        rows = next(r for r in self.row_tiles if _extent(sch, i) % r == 0)
        i_outer, i_inner = sch.split(i, [None, rows])
        j_outer, j_vectors, j_lanes = sch.split(j, [None, LANES // self.vector, self.vector])
        k_outer, k_inner = sch.split(k, [None, GROUP])
        sch.reorder(j_outer, *leading, i_outer, *taps, k_outer, i_inner, j_vectors, j_lanes, k_inner)
        outer = sch.fuse(j_outer, *leading, i_outer)
        sch.parallel(outer)
        for consumer in _inline_elementwise(sch, epilogue):
            sch.reverse_compute_at(consumer, outer)
            _vectorize_inner(sch, consumer, 4 * LANES)
        init = sch.decompose_reduction(block, taps[0] if taps else k_outer)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(j_lanes, self.intrinsic())
        sch.unroll(j_vectors)
        sch.unroll(i_inner)
        return sch


def _inline_elementwise(sch: s_tir.Schedule, epilogue: list[Any]) -> list[Any]:
    """The epilogue blocks left after inlining every one that can be into its consumer: the
    requantization chain after an int8 conv (zero-point correction, scale, bias, ReLU, divide, round,
    clamp, cast: 12 blocks) then is one loop over the tile instead of 12, each through its own buffer."""
    kept = []
    for block in epilogue[:-1]:
        try:
            sch.compute_inline(block)
        except s_tir.ScheduleError:
            kept.append(block)
    return [*kept, *epilogue[-1:]]


def has_root_block(func: tirx.PrimFunc) -> bool:
    """Whether ``func``'s body is the usual root block over its compute blocks. TOPI kernels written
    with ``ir_builder`` (``cumsum``, sorting, NMS) are one opaque block (``cumsum_generic``) instead, with
    no root block for a schedule rule to look into."""
    body = func.body
    return isinstance(body, s_tir.SBlockRealize) and body.block.name_hint == "root"


def _extent(sch: s_tir.Schedule, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _vectorize_inner(sch: s_tir.Schedule, block: Any, limit: int) -> None:
    loops = sch.get_loops(block)
    if len(loops) > 1 and _extent(sch, loops[-1]) <= limit:
        sch.vectorize(loops[-1])
