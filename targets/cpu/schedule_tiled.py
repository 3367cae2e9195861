"""Register-blocked CPU schedule for contractions: dense/matmul, batch matmul, conv2d (grouped too),
depthwise, pooling.

All of these are one reduction block ``out[s0, ..., i, j] (+)= f(in, w)[..., r0, ...]`` whose last
spatial axis ``j`` is the innermost (contiguous) axis of the output. The same recipe makes all of
them fast on a SIMD CPU:

* ``j`` is split into a register tile of ``nj`` vectors of ``vw`` lanes, each vector one SIMD
  register (``vw`` divides ``j``: 24 output channels are 3 vectors of 8, not one ragged vector of 24,
  which LLVM turned into code 11x slower); the axis before it (``i``: rows of a matmul, output
  columns of an NHWC conv) is split into ``ii`` unrolled rows, giving ``ii * nj`` independent
  accumulators (enough to hide FMA latency, few enough to stay in the 32 vector registers);
* the reduction loops sit between the tile loops and the register loops, so the accumulators stay in
  registers for the whole reduction and are written once;
* the outer spatial loops and the ``j`` tile loop are fused and run in parallel over the cores:
  ``j`` innermost (consecutive iterations read consecutive weight columns) where the activations
  outweigh the weights, ``j`` outermost (each weight tile read from memory once, then reused for
  every row tile) where the weights do and are too big to stay in cache between calls
  (``_weights_outweigh_activations``, ``STREAMED_WEIGHT_BYTES``);
* injective epilogues (bias, BN scale, ReLU, residual add) are computed per tile right after the
  accumulation, on data still in L1/registers; an epilogue over a larger domain than the
  contraction's output (a pad) runs after it, over its whole domain (``_per_tile_epilogues``);
* a convolution's zero padding is materialized once, in a block of its own, rather than inlined:
  inlined, every input load of the inner loop carries a bounds check.

The rule only reorders, splits and annotates loops, so the computed values are those of the
unscheduled function (up to floating-point summation order, which is unchanged: the reduction loop
order is kept).
"""

from __future__ import annotations

import tvm
from tvm import s_tir, sym, tirx
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target

from .schedule_simple import inline_spatial, is_reduction_block, schedule_injective_block, vector_lanes

IF_THEN_ELSE = tvm.ir.Op.get("prim.if_then_else")
# AVX-512 and AVX2 targets have 32 / 16 vector registers; keep accumulators plus operands inside.
MAX_ACCUMULATORS = 24
ROW_TILES = (8, 7, 6, 5, 4, 3, 2, 1)
# TVM places a per-iteration buffer on the stack only below this size (runtime::kMaxStackAlloca).
MAX_STACK_BYTES = 1024
# Block annotation of a grouped convolution (targets/cpu/packed_weights.py): its number of groups.
GROUPS_ATTR = "graphopt.conv_groups"
# Rows with no divisor of at least this many (a prime count: ViT's 197 tokens) get full row tiles and
# a ragged last one; ``ii = 1`` ran ViT-B/16's MLP matmuls at 91 GFLOP/s, ragged tiles at 181 (200 rows:
# 199). Not where the columns are ragged too (attention's 197x197 scores): both predicates together
# ran its ``q @ k^T`` 2.4x slower than ``ii = 1``.
RAGGED_ROWS_BELOW = 4
RAGGED_MIN_ROWS = 16
# Reductions at least this long amortize a heap-allocated tile (measured on a 128x256x1024 matmul).
LONG_REDUCTION = 128
# Below this many multiply-adds (output points x reduction), on operands this small (cache-resident),
# one thread beats two: a parallel launch costs ~0.85 us, and the 113K-MAC first conv of the digits
# CNN ran 1.02 us serially against 1.35 us in parallel (AMD EPYC Zen 5, two threads), its 2x2 max
# pools 0.38 and 0.06 us against 0.77 and 0.71; at 451K MACs (the ensemble's wide conv) parallel won
# (2.8 us against 3.9).
SERIAL_BELOW_MACS = 256 * 1024
SERIAL_BELOW_BYTES = 256 * 1024
# Weights from this size are read from memory, not cache, at each call of a real model (ResNet-50's
# 1x1 and 3x3 convs from 1 MB up, ViT's matmuls 2.4-9.4 MB): only those run channel tiles outermost.
# Below it (the ensemble benchmark's digits CNNs, 74-250 KB) rows outermost measured faster: the
# horizontally fused ensemble ran 0.035 ms per batch-1 call that way and 0.064 ms channels-first.
STREAMED_WEIGHT_BYTES = 1 << 20
# A matmul's symbolic row count (a dynamic batch) is computed in whole tiles of this many rows
# (packed_weights.packed_dense), so the schedule can tile them without a predicate.
SYMBOLIC_ROW_TILE = 8


def _extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _static_extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int:
    extent = _extent(sch, loop)
    assert extent is not None, "tiled only where every loop extent is static (checked before)"
    return extent


def _innermost_output_var(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> tirx.Var | None:
    """The block iter var that indexes the output's innermost dimension, if it is a plain var."""
    writes = sch.get(block).writes
    if len(writes) != 1 or not writes[0].region:  # a scalar output (a max over a whole tensor)
        return None
    last = writes[0].region[-1]
    return last.min if isinstance(last.min, tirx.Var) and int(last.extent) == 1 else None


def choose_tiles(extent_i: int | tirx.PrimExpr, extent_j: int, lanes: int, reduction: int) -> tuple[int, int, int]:
    """Register tile: ``ii`` rows by ``nj`` vectors of ``vw`` lanes.

    ``vw`` is the widest power of two up to ``lanes`` that divides ``extent_j`` and ``nj`` the most
    such vectors (dividing the axis) up to two full registers' width; an axis with no divisor of at
    least 4 lanes is one vector of its whole length when short (10 classes), else ``lanes`` wide
    with a ragged last tile. ``ii`` is the largest divisor of ``extent_i`` up to 8 that keeps the
    accumulators within ``MAX_ACCUMULATORS``. A tile of ``MAX_STACK_BYTES`` or more is
    heap-allocated on every iteration of the parallel loop; that only pays off when the reduction is
    long, so short reductions (1x1 convs over few channels) keep the tile under the limit.
    A symbolic row count (a dynamic batch reaching a matmul's rows) gets the largest tile that
    provably divides it (``SYMBOLIC_ROW_TILE`` where packed_dense rounded it up), else 1: a ragged
    tile's predicate would keep the accumulators out of registers.
    """
    vw = lanes
    while vw > 1 and extent_j % vw:
        vw //= 2
    if vw >= 4:
        columns = extent_j // vw
        nj = next(n for n in range(min(columns, 2 * lanes // vw), 0, -1) if columns % n == 0)
    else:
        vw, nj = (extent_j, 1) if extent_j <= 4 * lanes else (lanes, 1)
    vectors = nj * -(-vw // lanes)
    limit = MAX_STACK_BYTES if reduction < LONG_REDUCTION else 1 << 30
    fits = [t for t in ROW_TILES if t * vectors <= MAX_ACCUMULATORS and t * nj * vw * 4 < limit]
    if not isinstance(extent_i, int):
        analyzer = sym.Analyzer()
        return next(t for t in fits if analyzer.can_prove_equal(tirx.floormod(extent_i, t), 0)), nj, vw
    ii = next(t for t in fits if extent_i % t == 0)
    if ragged_rows(extent_i) and not ragged_columns(extent_j, lanes):
        ii = fits[0]  # no good divisor (197 tokens): full tiles and one ragged last tile
    return ii, nj, vw


def ragged_rows(extent_i: int) -> bool:
    """Rows no tile of ``RAGGED_ROWS_BELOW`` to 8 divides (197), and enough of them to tile."""
    return extent_i >= RAGGED_MIN_ROWS and all(extent_i % t for t in ROW_TILES if t >= RAGGED_ROWS_BELOW)


def ragged_columns(extent_j: int, lanes: int) -> bool:
    """Columns no vector of at least 4 lanes divides, too many for one short vector (10 classes are
    one): ``choose_tiles`` then ends every row with a partial, predicated vector."""
    return extent_j % 4 != 0 and extent_j > 4 * lanes


class TiledContraction(CPUScheduleRule):
    """Matches a fused function with exactly one reduction block whose innermost output axis is a
    spatial loop; anything else is left to the other rules.

    The reduction domain may be empty: ``normalize_prim_func`` drops unit-extent loops, so a
    depthwise 1x1 conv or a dense with K = 1 arrives as an all-spatial block that still has its
    ``T.init()`` (``is_reduction_block``); it is tiled the same way, without reduction loops.
    """

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if blocks is None:
            return None
        pads = _channel_padding_blocks(sch, blocks)
        infos = inline_spatial(sch, [info for info in blocks if info not in pads])
        if not infos:
            return None
        reductions = [i for i, info in enumerate(infos) if is_reduction_block(sch, info)]
        if len(reductions) != 1:
            return None
        index = reductions[0]
        main = infos[index]
        if not _is_plain_contraction(sch, main):
            return None
        lanes = vector_lanes(target)
        epilogues = infos[index + 1 :]
        tile_loop, vw = _tile_main(sch, main, lanes, has_epilogue=bool(epilogues))
        per_tile = _per_tile_epilogues(main, epilogues)
        for epilogue in epilogues[:per_tile]:
            sch.reverse_compute_at(epilogue.block_rv, tile_loop, preserve_unit_loops=True)
            _vectorize_innermost(sch, epilogue.block_rv, lanes, vw)
        for epilogue in epilogues[per_tile:]:
            schedule_injective_block(sch, epilogue.block_rv, lanes)
        for prologue in [*pads, *infos[:index]]:
            schedule_injective_block(sch, prologue.block_rv, lanes)
        return sch


def _per_tile_epilogues(main: SBlockInfo, epilogues: list[SBlockInfo]) -> int:
    """How many of the epilogues, from the first, can be computed per tile: those whose domain has as
    many points as the contraction's output. ``reverse_compute_at`` gives an attached block only the
    iterations that read the tile, so a larger epilogue (a pad after a transposed conv: ONNX
    ConvTranspose's ``output_padding``) would leave the points that read nothing (the padding) unwritten:
    uninitialized memory in the output. Such an epilogue, and every one after it, runs after the whole
    contraction, over its full domain."""
    size = _points([d for d, kind in zip(main.dom(), main.dom_kind(), strict=True) if kind == "S"])
    analyzer = sym.Analyzer()
    for index, epilogue in enumerate(epilogues):
        points = _points(epilogue.dom())
        if not (analyzer.can_prove_equal(points, size) or _symbolic_slice(analyzer, points, size)):
            return index
    return len(epilogues)


def _symbolic_slice(analyzer: sym.Analyzer, points: tirx.PrimExpr, size: tirx.PrimExpr) -> bool:
    """A symbolic epilogue domain no larger than the contraction's: the slice of a dynamic batch's
    rows off their whole tiles (packed_weights.packed_dense). Per tile it computes the rows read
    from the tile, none of the padding."""
    return not isinstance(points, tirx.IntImm) and analyzer.can_prove(points <= size)


def _points(extents: list[object]) -> tirx.PrimExpr:
    """The number of points of a domain (an expression of the batch size where it is symbolic)."""
    total: tirx.PrimExpr = tirx.IntImm("int64", 1)
    for extent in extents:
        total = total * (tirx.IntImm("int64", extent) if isinstance(extent, int) else extent)
    return total


def _is_padding(sch: s_tir.Schedule, info: SBlockInfo) -> bool:
    """Whether the block writes a padded copy of its input: ``if_then_else(in bounds, x[...], c)``."""
    body = sch.get(info.block_rv).body
    return (
        not is_reduction_block(sch, info)
        and isinstance(body, tirx.BufferStore)
        and isinstance(body.value, tvm.ir.expr.Call)
        and body.value.op.same_as(IF_THEN_ELSE)
    )


def _channel_padding_blocks(sch: s_tir.Schedule, blocks: list[SBlockInfo]) -> list[SBlockInfo]:
    """The padding blocks read by a reduction along their innermost axis (a convolution's input
    channels), which are kept out of the inlining: inlined, the bounds check is in the innermost
    loop; materialized once, the 3x3 convs of ResNet-18 at 56x56x64 ran 2.2x faster (2.7 -> 1.2 ms).
    Pooling and depthwise convs reduce over the window only, where the inlined check is cheaper than
    the copy (a 112x112x64 max pool: 0.04 ms inlined, 0.08-0.14 ms with the copy)."""
    reductions = [info for info in blocks if is_reduction_block(sch, info)]
    if len(reductions) != 1:
        return []
    reduction = reductions[0]
    reduce_vars = [it.var for it in reduction.iters if it.kind == "R"]
    pads = []
    for info in blocks:
        if not _is_padding(sch, info):
            continue
        padded = sch.get(info.block_rv).writes[0].source
        for read in sch.get(reduction.block_rv).reads:
            last = read.region[-1].min
            if read.source.same_as(padded) and _uses_any(last, reduce_vars):
                pads.append(info)
                break
    return pads


def _uses_any(expr: tirx.PrimExpr, variables: list[tirx.Var]) -> bool:
    """Whether ``expr`` reads one of ``variables``: the channel index of a plain conv is the reduction
    var itself, that of a grouped conv ``o / CO_g * CI_g + c``."""
    return any(used.same_as(v) for used in tirx.analysis.undefined_vars(expr) for v in variables)


def _is_plain_contraction(sch: s_tir.Schedule, main: SBlockInfo) -> bool:
    """One reduction block whose innermost output axis is its last spatial loop, with static
    extents on that axis and the reduction; the outer spatial extents may be symbolic (a dynamic
    batch: the outer loops are fused into the parallel loop, a matmul's rows tiled as ``choose_tiles``
    says)."""
    kinds = main.dom_kind()
    if "O" in kinds or "S" not in kinds:
        return False
    spatial = [it for it in main.iters if it.kind == "S"]
    if not isinstance(spatial[-1].dom, int) or any(not isinstance(it.dom, int) for it in main.iters if it.kind == "R"):
        return False
    return _innermost_output_var(sch, main.block_rv) is not None and spatial[-1].var.same_as(
        _innermost_output_var(sch, main.block_rv)
    )


def _tile_main(
    sch: s_tir.Schedule, main: SBlockInfo, lanes: int, has_epilogue: bool
) -> tuple[s_tir.schedule.LoopRV, int]:
    """Tile, reorder and annotate the reduction block; return the loop the epilogues attach to and
    the tile's vector width."""
    block = main.block_rv
    spatial = [it.loop_rv for it in main.iters if it.kind == "S"]
    reduction = [it.loop_rv for it in main.iters if it.kind == "R"]
    j = spatial[-1]
    i = spatial[-2] if len(spatial) > 1 else None
    extent_j = _static_extent(sch, j)
    extent_i = (_extent(sch, i) or sch.get(i).extent) if i is not None else 1
    reduction_size = 1
    for loop in reduction:
        reduction_size *= _static_extent(sch, loop)
    points = _product(sch, spatial)
    macs = None if points is None else points * reduction_size
    groups = _groups(sch, block, extent_j)
    ii, nj, vw = choose_tiles(extent_i, extent_j // groups, lanes, reduction_size)

    # Accumulate into a tile-sized intermediate: the epilogue's input, or a copy of the output.
    if not has_epilogue:
        sch.cache_write(block, 0, "global")
    # A grouped conv is split by group first, so no tile spans two groups (each vector multiplies one
    # broadcast input channel). The group loop sits just outside the channel tiles, so consecutive
    # tiles read consecutive input cache lines (groups outermost was ~20% slower at batch 64).
    group, jo, j_vectors, j_lanes = sch.split(j, factors=[groups, None, nj, vw])
    outer_groups = [group] if groups > 1 else []
    if i is not None:
        weights_first = _weights_outweigh_activations(sch, main)
        io, i_inner = sch.split(i, factors=[None, ii])
        rows = [*spatial[:-2], io]
        outer = [*outer_groups, jo, *rows] if weights_first else [*rows, *outer_groups, jo]
        inner = [i_inner, j_vectors, j_lanes]
    else:
        outer = [*outer_groups, jo]
        inner = [j_vectors, j_lanes]
    sch.reorder(*outer, *reduction, *inner)
    parallel = sch.fuse(*outer)
    if not _runs_faster_serially(sch, block, macs):
        sch.parallel(parallel)
    for loop in inner[:-1]:
        sch.unroll(loop)
    sch.vectorize(inner[-1])
    # The init goes above the reduction loops (or, for a unit reduction domain, above the tile).
    sch.decompose_reduction(block, reduction[0] if reduction else inner[0])
    if not has_epilogue:
        writeback = sch.get_consumers(block)[0]
        sch.reverse_compute_at(writeback, parallel, preserve_unit_loops=True)
        _vectorize_innermost(sch, writeback, lanes, vw)
    return parallel, vw


def _weights_outweigh_activations(sch: s_tir.Schedule, main: SBlockInfo) -> bool:
    """Whether the operands that do not depend on the rows (``i``: a matmul's rows, a conv's output
    columns), the weights, hold more bytes than those that do, the activations, and at least
    ``STREAMED_WEIGHT_BYTES``.

    The parallel loop then runs channel tiles outermost: each weight tile is read from memory once
    and reused for every row tile while it is in cache. Rows outermost stream all the weights once
    per row tile; the first pass comes from DRAM at a row tile's compute rate, which is why ViT-B/16
    (344 MB of weights) ran 13 ms longer than its kernels timed alone (96 vs 83 ms). Activations
    outweighing weights (early convolutions, large batches) keep rows outermost for the same reason.
    A symbolic batch is judged at batch 1, the serving case: BERT-base's MLP matmuls with a dynamic
    batch ran 19.4 ms per call at batch 1 with rows outermost, against 16.9 static."""
    spatial = [it for it in main.iters if it.kind == "S"]
    if len(spatial) < 2:
        return False
    row = spatial[-2].var
    block = sch.get(main.block_rv)
    output = block.writes[0].source
    weights = activations = 0
    for region in block.reads:
        buffer = region.source
        if buffer.same_as(output):
            continue
        size = _bytes(buffer)
        if any(_uses_var(r.min, row) for r in region.region):
            activations += size
        else:
            weights += size
    return weights > activations and weights >= STREAMED_WEIGHT_BYTES


def _uses_var(expr: tirx.PrimExpr, var: tirx.Var) -> bool:
    return any(used.same_as(var) for used in tirx.analysis.undefined_vars(expr))


def _bytes(buffer: tirx.Buffer) -> int:
    """The buffer's bytes, a symbolic extent (a dynamic batch) counted as 1."""
    points = 1
    for extent in buffer.shape:
        points *= int(extent) if isinstance(extent, tirx.IntImm) else 1
    return points * tvm.DataType(str(buffer.dtype)).bits // 8


def _product(sch: s_tir.Schedule, loops: list[s_tir.schedule.LoopRV]) -> int | None:
    """The loops' points, None when one extent is symbolic."""
    total = 1
    for loop in loops:
        extent = _extent(sch, loop)
        if extent is None:
            return None
        total *= extent
    return total


def _runs_faster_serially(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, macs: int | None) -> bool:
    """Whether the contraction is too small for a parallel launch to pay (``SERIAL_BELOW_MACS``);
    never where its size is symbolic (a dynamic batch may be large)."""
    if macs is None or macs >= SERIAL_BELOW_MACS:
        return False
    buffers = [region.source for region in sch.get(block).reads]
    if not all(isinstance(d, tirx.IntImm) for buffer in buffers for d in buffer.shape):
        return False
    return sum(_bytes(buffer) for buffer in buffers) < SERIAL_BELOW_BYTES


def _groups(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, extent_j: int) -> int:
    """The groups of a grouped conv (its ``GROUPS_ATTR`` annotation) where each group's output
    channels can be tiled alone, else 1."""
    groups = sch.get(block).annotations.get(GROUPS_ATTR)
    groups = int(groups) if groups is not None else 1
    return groups if groups > 1 and extent_j % groups == 0 else 1


def _vectorize_innermost(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, lanes: int, vw: int) -> None:
    """Vectorize a tile's epilogue or write-back by the tile's vectors (``vw`` lanes each)."""
    loops = sch.get_loops(block)
    extent = _extent(sch, loops[-1])
    if extent is None or extent <= 1 or extent > 4 * lanes:
        return
    if extent % vw == 0 and extent > vw:
        sch.vectorize(sch.split(loops[-1], factors=[None, vw])[1])
    else:
        sch.vectorize(loops[-1])
