"""The CPU schedule of ``lut_dense`` (targets/pipeline/lut_weights.py): a dense layer reading its
weights through a codebook, ``y[i, o] = sum_k x[i, k] * codebook[index(o, k)]``.

The packed indices are laid out ``K x O`` (``lut_weights.pack``), so the outputs are vectorized:
each step of ``k`` broadcasts ``x[i, k]``, reads one byte per lane (a contiguous load), decodes the
lanes' indices and multiply-adds into sums that stay in registers (``cache_write``) over the whole
reduction; 4 vectors of outputs are unrolled side by side, tiles of outputs run in parallel, and the
epilogue (bias, activation) follows each tile. The sum over ``k`` runs in the dense kernel's order,
so the outputs equal the decoded-at-load ones (bit for bit on the test MLP). Output counts that are
not a multiple of the vector width (a 10-class head) run as plain parallel loops.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target

from .schedule_simple import inline_spatial, vector_lanes

BLOCK = "lut_dense"


class LutGather(CPUScheduleRule):
    """Functions whose reduction is a ``lut_dense`` block (possibly with a fused epilogue)."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        try:
            block = sch.get_sblock(BLOCK)
        except Exception:  # no such block: not this rule's function
            return None
        lanes = vector_lanes(target)
        epilogue = [info.block_rv for info in inline_spatial(sch, normalize_prim_func(sch)) or []]
        epilogue = [b for b in epilogue if sch.get(b).name_hint != BLOCK]
        *_, o, k = sch.get_loops(block)
        outputs = sch.get(o).extent
        if not isinstance(outputs, tirx.IntImm) or int(outputs) % lanes:
            if isinstance(outputs, tirx.IntImm):
                sch.parallel(o)
            return sch
        group = next(g for g in (4, 2, 1) if int(outputs) % (g * lanes) == 0)
        tile, vector, lane = sch.split(o, factors=[None, group, lanes])
        sch.reorder(tile, k, vector, lane)
        sch.unroll(vector)  # independent decodes and multiply-adds in flight
        sums = sch.cache_write(block, 0, "local")  # the lanes' sums stay in a register over k
        sch.reverse_compute_at(sums, tile)
        sch.vectorize(lane)
        for later in epilogue:
            sch.reverse_compute_at(later, tile)
        for later in [sums, *epilogue]:
            sch.vectorize(sch.get_loops(later)[-1])
        sch.parallel(tile)
        sch.decompose_reduction(block, k)
        return sch
