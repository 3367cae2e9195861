"""``DotProductRule``: the schedule shared by the integer dot-product rules (targets/vnni.py, arm_dot.py).

``int8_dense`` (targets/int8_kernels.py) reads packed weights ``Wp[N/16, K/4, 16, 4]``; one
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

from typing import Any

import tvm
from graphopt.targets.int8_kernels import DENSE_BLOCK, GROUP, LANES
from tvm import s_tir, tirx
from tvm.s_tir import dlight


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
        for consumer in epilogue:
            sch.reverse_compute_at(consumer, outer)
            _vectorize_inner(sch, consumer, 4 * LANES)
        init = sch.decompose_reduction(block, taps[0] if taps else k_outer)
        sch.vectorize(sch.get_loops(init)[-1])
        sch.tensorize(j_lanes, self.intrinsic())
        sch.unroll(j_vectors)
        sch.unroll(i_inner)
        return sch


def _extent(sch: s_tir.Schedule, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _vectorize_inner(sch: s_tir.Schedule, block: Any, limit: int) -> None:
    loops = sch.get_loops(block)
    if len(loops) > 1 and _extent(sch, loops[-1]) <= limit:
        sch.vectorize(loops[-1])
