"""CPU schedules for the functions that are not contractions: elementwise/injective functions and a
last-resort rule that at least runs any other function on every core.

Both only split, fuse, parallelize and vectorize spatial loops, which never changes a computed value.

``inline_spatial`` is the block inlining every rule here uses instead of dlight's
``try_inline_contiguous_spatial``, which is wrong for reductions over a unit-extent domain (a
depthwise 1x1 conv, a dense with K = 1, a mean over a size-1 axis): TVM's ``normalize_prim_func``
drops unit loops, reduction ones included, so such a block is reported as all-spatial ("SSSS") while
it still has a ``T.init()``; TVM 0.27's ``reverse_compute_inline`` then accepts it as a producer and
rewrites both the init and the update with the epilogue, applying it twice (a bias added twice).
"""

from __future__ import annotations

import math

import tvm
from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target
from tvm.target.codegen import llvm_get_vector_width

# A parallel launch costs about 0.85 us on two threads (AMD EPYC Zen 5: conv kernels timed alone,
# serial against parallel), so a loop must run about 2 us serially to gain from it. A pure copy
# (transpose, reshape) moves about 17 float32 per ns on one thread: 32768 of them is 2 us. An element
# that also computes costs more: each float operation in its expression counts as one element more.
MIN_PARALLEL_WORK = 32768


def vector_lanes(target: Target, bits: int = 32) -> int:
    """fp32 lanes of one SIMD register of the target (16 on AVX-512, 8 on AVX2, 4 on NEON/SSE)."""
    width = llvm_get_vector_width(target)
    return max(width if width > 0 else 128, 128) // bits


def _extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def is_reduction_block(sch: s_tir.Schedule, info: SBlockInfo) -> bool:
    """Whether the block accumulates into its output: it has a reduction iter or a ``T.init()``
    (the only trace left of a unit-extent reduction once ``normalize_prim_func`` dropped its loops)."""
    return not info.is_injective() or sch.get(info.block_rv).init is not None


def _try_inline(sch: s_tir.Schedule, blocks: list[SBlockInfo]) -> list[SBlockInfo]:
    """Inline as many of ``blocks`` (spatial) into their consumers or producers as possible; return
    the others. Never reverse-inlines into a reduction block: its init and update would both get
    the epilogue."""

    def _reverse_inline(block: s_tir.schedule.SBlockRV) -> None:
        if any(sch.get(producer).init is not None for producer in sch.get_producers(block)):
            raise ValueError("the producer is a reduction block")
        sch.reverse_compute_inline(block)

    def _trial(inline) -> int | None:
        for index, info in enumerate(blocks):
            try:
                inline(info.block_rv)
            except Exception:  # a block that cannot be inlined stays
                continue
            return index
        return None

    while True:
        index = _trial(sch.compute_inline)
        if index is None:
            index = _trial(_reverse_inline)
        if index is None:
            return blocks
        blocks.pop(index)


def inline_spatial(sch: s_tir.Schedule, infos: list[SBlockInfo] | None) -> list[SBlockInfo] | None:
    """dlight's ``try_inline_contiguous_spatial``, with reductions told apart by ``is_reduction_block``
    (see the module docstring): runs of spatial blocks are inlined where possible; the remaining
    blocks are returned in order."""
    if infos is None:
        return None
    remaining: list[SBlockInfo] = []
    run: list[SBlockInfo] = []
    for info in infos:
        if not is_reduction_block(sch, info):
            run.append(info)
            continue
        remaining += _try_inline(sch, run) if run else []
        remaining.append(info)
        run = []
    return remaining + (_try_inline(sch, run) if run else [])


def _selects(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> bool:
    """Whether the block's value is an ``if_then_else`` between two or more buffers (a concat): TVM 0.27's
    vectorizer gives such a block wrong lanes (a rotary embedding's ``concat`` inlined into a reshape read
    the other branch's operands out of bounds), so it is left to run scalar. A pad (one buffer or a
    constant) vectorizes correctly and stays vectorized: the 3x3 convolutions of ResNet-50 and RegNetY
    have such a ``pad_temp`` block."""
    value = sch.get(block)
    return len(value.reads) > 1 and "if_then_else" in str(value.body)


def float_operations(expr: object) -> int:
    """How many float operations ``expr`` computes per point (loads, index arithmetic and constants
    are free): the per-element cost of an injective block, 0 for a copy."""
    kind = type(expr).__name__
    if kind in ("BufferLoad", "Var", "FloatImm", "IntImm") or not isinstance(expr, tvm.ir.expr.Expr):
        return 0
    own = 1 if str(getattr(expr, "ty", "")).startswith(("float", "bfloat")) else 0
    fields = ("a", "b", "value", "condition", "true_value", "false_value")
    children = [getattr(expr, f) for f in fields if hasattr(expr, f)]
    if isinstance(expr, tvm.ir.expr.Call):
        children += list(expr.args)
    return own + sum(float_operations(child) for child in children)


def schedule_injective_block(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, lanes: int) -> None:
    """Vectorize the innermost loop by whole SIMD registers and run the outer loops in parallel where
    the work pays for the launch (``MIN_PARALLEL_WORK``)."""
    loops = sch.get_loops(block)
    if not loops:
        return
    if _selects(sch, block):
        lanes = 1
    extents = [_extent(sch, loop) for loop in loops]
    last = extents[-1]
    if last is None:  # a symbolic innermost extent: no whole vectors to cut
        sch.parallel(loops[0])
        return
    inner = loops[-1]
    outer_loops = list(loops[:-1])
    if lanes > 1 and last % lanes == 0 and last > lanes:
        outer_part, inner = sch.split(inner, factors=[None, lanes])
        outer_loops.append(outer_part)
    if lanes > 1 and last > 0 and (last % lanes == 0 or last <= lanes):  # TVM cannot vectorize 0
        sch.vectorize(inner)
    body = sch.get(block).body
    per_point = 1 + (float_operations(body.value) if isinstance(body, tirx.BufferStore) else 0)
    # A symbolic outer extent (a dynamic batch) may be large: parallel.
    total = None if None in extents else math.prod(extents)  # type: ignore[arg-type]
    if outer_loops and (total is None or total * per_point >= MIN_PARALLEL_WORK):
        sch.parallel(sch.fuse(*outer_loops) if len(outer_loops) > 1 else outer_loops[0])


class Injective(CPUScheduleRule):
    """Functions made only of spatial blocks (reshape, transpose, add, activation chains)."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = inline_spatial(sch, normalize_prim_func(sch))
        if not infos or any(is_reduction_block(sch, info) for info in infos):
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
