"""CPU schedules for the functions that are not contractions: elementwise/injective functions and a
last-resort rule that at least runs any other function on every core.

Both only split, fuse, parallelize and vectorize spatial loops, which never changes a computed value.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline_contiguous_spatial
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target
from tvm.target.codegen import llvm_get_vector_width

# Below this many elements a parallel launch costs more than it saves.
MIN_PARALLEL_ELEMENTS = 4096


def vector_lanes(target: Target, bits: int = 32) -> int:
    """fp32 lanes of one SIMD register of the target (16 on AVX-512, 8 on AVX2, 4 on NEON/SSE)."""
    width = llvm_get_vector_width(target)
    return max(width if width > 0 else 128, 128) // bits


def _extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def schedule_injective_block(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, lanes: int) -> None:
    """Vectorize the innermost loop by whole SIMD registers and run the outer loops in parallel."""
    loops = sch.get_loops(block)
    if not loops:
        return
    extents = [_extent(sch, loop) for loop in loops]
    if any(e is None for e in extents):
        sch.parallel(loops[0])
        return
    total = 1
    for e in extents:
        total *= e
    inner = loops[-1]
    outer_loops = list(loops[:-1])
    if extents[-1] % lanes == 0 and extents[-1] > lanes:
        outer_part, inner = sch.split(inner, factors=[None, lanes])
        outer_loops.append(outer_part)
    if extents[-1] % lanes == 0 or extents[-1] <= lanes:
        sch.vectorize(inner)
    if outer_loops and total >= MIN_PARALLEL_ELEMENTS:
        sch.parallel(sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0])


class Injective(CPUScheduleRule):
    """Functions made only of spatial blocks (reshape, transpose, add, activation chains)."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = try_inline_contiguous_spatial(sch, normalize_prim_func(sch))
        if not infos or not all(info.is_injective() for info in infos):
            return None
        lanes = vector_lanes(target)
        for info in infos:
            schedule_injective_block(sch, info.block_rv, lanes)
        return sch


class ParallelFallback(CPUScheduleRule):
    """Any other function: parallelize the outermost spatial loop of every block."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos:
            return None
        for info in infos:
            if info.iters and info.iters[0].kind == "S":
                extent = info.iters[0].dom
                if isinstance(extent, int) and extent > 1:
                    sch.parallel(info.iters[0].loop_rv)
        return sch
