"""Float convolutions and matmuls on weights blocked by output-channel tile, packed at compile time.

An NHWC convolution with HWIO weights reads, for one register tile of ``B`` output channels, the
rows ``W[kh, kw, c, jo*B : (jo+1)*B]``: ``B`` floats every ``CO`` floats, a strided stream the
hardware prefetcher serves badly once the weights no longer fit in cache (ResNet-18's 45 MB do
not); a matmul's ``[K, N]`` weight is read the same way. Legalized here instead:

* a float32 ``relax.nn.conv2d`` (NHWC/HWIO, static shapes but for a symbolic batch) becomes ``pack_conv_weight``
  (``W -> Wp[CO/B, KH, KW, CI_g, B]``) and ``packed_conv2d``, the direct convolution on the
  zero-padded input reading ``Wp``. A grouped conv (1 < groups < channels) is the same kernel with
  ``B`` dividing one group's ``CO_g`` outputs (``Wp`` is then ``[G, CO_g/B, KH, KW, CI_g, B]``
  flattened) and the input channel ``o / CO_g * CI_g + c``; its block is annotated with the group
  count so the schedule tiles each group alone (``schedule_tiled.GROUPS_ATTR``). TVM's own
  grouped conv tiles across groups, and a SIMD vector spanning two groups gathers its inputs: at
  RegNet's 8-channel groups it ran 15x slower than this (48 channels in 6 groups at 56x56:
  5.8 -> 0.37 ms); at the horizontally fused ensemble's 4 groups of 16 -> 32 it is on par;
* a float32 ``relax.matmul`` of a ``[M, K]`` activation by a constant ``[K, N]`` weight becomes
  ``pack_dense_weight`` (``W -> Wp[N/B, K, B]``) and ``packed_dense``.

Each tile's weights are then one contiguous block. The weights are constants, so FoldConstant packs
them once, at compile time. ``B`` is the tile width ``schedule_tiled.choose_tiles`` picks for the
same contraction, so the schedule's vector loads are contiguous runs of ``Wp``. The values are
those of TVM's own kernels: the same products, summed in the same order. Measured here (ResNet-18,
2 threads): the whole model 23.7 -> 18.1 ms; a 3x3 conv over 7x7x512 with cold weights (8 weight
sets in turn, 75 MB) 2.5 -> 1.9 ms; the transformer's matmuls ~9% faster. Anything else
(depthwise or int8 convs, activations times activations, symbolic shapes other than the batch, non-LLVM targets) is
left to the next legalization.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax, te, tirx, topi

from .schedule_simple import vector_lanes
from .schedule_tiled import GROUPS_ATTR, SYMBOLIC_ROW_TILE, choose_tiles


def static_shape(expr: relax.Expr) -> list[int] | None:
    """``expr``'s shape as ints, or None where any dimension is symbolic or unknown."""
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not all(isinstance(d, tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def shape_with_batch(expr: relax.Expr) -> list[Any] | None:
    """``expr``'s shape with every dimension but the first an int, the first an int or a symbolic
    size (``dynamic_batch=True``), or None."""
    shape = getattr(expr.ty, "shape", None)
    if shape is None or len(shape) == 0 or not all(isinstance(d, tirx.IntImm) for d in list(shape)[1:]):
        return None
    first = shape[0]
    return [int(first) if isinstance(first, tirx.IntImm) else first, *(int(d) for d in list(shape)[1:])]


def tile_width(rows: int, channels: int, reduction: int, target: tvm.target.Target) -> int | None:
    """Output channels per register tile (``nj * vw``) that ``TiledContraction`` will pick for a
    contraction with ``rows`` on its second-innermost output axis, if that width divides them."""
    _, nj, vw = choose_tiles(rows, channels, vector_lanes(target), reduction=reduction)
    width = nj * vw
    return width if channels % width == 0 else None


def pack_conv_weight(kernel: te.Tensor, width: int) -> te.Tensor:
    """HWIO ``[KH, KW, CI, CO]`` -> ``[CO/width, KH, KW, CI, width]``."""
    kh, kw, ci, co = (int(d) for d in kernel.shape)
    return te.compute(
        (co // width, kh, kw, ci, width),
        lambda jo, h, w, c, ji: kernel[h, w, c, jo * width + ji],
        name="pack_conv_weight",
    )


def packed_conv2d(data: te.Tensor, packed: te.Tensor, attrs: Any, out_shape: list[int]) -> te.Tensor:
    """``out[b, oh, ow, o] = sum_{kh, kw, c} pad(data)[b, oh*sh + kh*dh, ow*sw + kw*dw, g(o)*CI_g + c] *
    packed[o / B, kh, kw, c, o % B]``, where ``g(o) = o / CO_g`` is the group of output channel ``o``
    (0 for a plain conv) and ``c`` runs over the ``CI_g`` input channels of one group."""
    _, kh_size, kw_size, channels, width = (int(d) for d in packed.shape)
    out_per_group = out_shape[3] // int(attrs.groups)
    top, left, bottom, right = (int(p) for p in attrs.padding)
    stride_h, stride_w = (int(s) for s in attrs.strides)
    dilation_h, dilation_w = (int(d) for d in attrs.dilation)
    if top or left or bottom or right:
        data = topi.nn.pad(data, [0, top, left, 0], [0, bottom, right, 0], name="pad_temp")
    kh = te.reduce_axis((0, kh_size), name="kh")
    kw = te.reduce_axis((0, kw_size), name="kw")
    c = te.reduce_axis((0, channels), name="c")

    def compute(b: Any, oh: Any, ow: Any, o: Any) -> Any:
        channel = c if out_per_group == out_shape[3] else o // out_per_group * channels + c
        pixel = data[b, oh * stride_h + kh * dilation_h, ow * stride_w + kw * dilation_w, channel]
        return te.sum(pixel * packed[o // width, kh, kw, c, o % width], axis=[kh, kw, c])

    groups = int(attrs.groups)
    return te.compute(
        tuple(out_shape), compute, name="conv2d_nhwc", attrs={GROUPS_ATTR: groups} if groups > 1 else None
    )


def legalize_float_conv2d(bb: relax.BlockBuilder, call: relax.Call, fallback: Any) -> relax.Expr | None:
    """The packed legalization for an eligible float32 conv (see the module docstring), else
    ``fallback(bb, call)``."""
    attrs = call.attrs
    data, kernel = call.args
    target = tvm.target.Target.current(allow_none=True)
    out_shape = shape_with_batch(call)
    kernel_shape = static_shape(kernel)
    eligible = (
        target is not None
        and target.kind.name == "llvm"
        and data.ty.dtype == "float32"
        and kernel.ty.dtype == "float32"
        and str(attrs.out_dtype) in ("", "float32")
        and (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) == ("NHWC", "HWIO", "NHWC")
        and out_shape is not None
        and kernel_shape is not None
        and shape_with_batch(data) is not None
    )
    if not eligible:
        return fallback(bb, call)
    kh, kw, ci, co = kernel_shape  # type: ignore[misc]
    groups = int(attrs.groups)
    if groups > 1 and ci == 1:  # depthwise: no channel reduction to tile, TVM's own (TiledContraction schedules it)
        return fallback(bb, call)
    # A grouped conv's tile spans output channels of one group (the schedule tiles CO_g the same way).
    width = tile_width(out_shape[2], co // groups, kh * kw * ci, target)  # type: ignore[index, arg-type]
    if width is None:
        return fallback(bb, call)
    packed = bb.emit_te(pack_conv_weight, kernel, width, primfunc_name_hint="pack_conv_weight")
    return bb.call_te(packed_conv2d, data, packed, attrs, out_shape, primfunc_name_hint="conv2d")


def pack_dense_weight(weight: te.Tensor, width: int) -> te.Tensor:
    """``[K, N]`` -> ``[N/width, K, width]``."""
    k, n = (int(d) for d in weight.shape)
    return te.compute((n // width, k, width), lambda jo, kk, ji: weight[kk, jo * width + ji], name="pack_dense_weight")


def packed_dense(a: te.Tensor, packed: te.Tensor) -> te.Tensor:
    """``C[i, j] = sum_k A[i, k] * packed[j / B, k, j % B]``.

    With a symbolic row count ``n`` (a dynamic batch) the product is computed over ``n`` rounded up
    to whole tiles of ``SYMBOLIC_ROW_TILE`` rows, the rows past ``n`` repeating row ``n - 1``, and
    sliced back to ``n``: the schedule then tiles rows without a predicate. With one, TVM cannot size
    a tile whose extent is ``min(8, n - 8 * io)``, and it allocated the MNIST MLP's accumulators as an
    ``[n, 32]`` heap buffer on every iteration of the parallel loop. Batch 1 pays for one tile of rows."""
    tiles, k_size, width = (int(d) for d in packed.shape)
    k = te.reduce_axis((0, k_size), name="k")
    rows = a.shape[0]
    if isinstance(rows, tirx.IntImm):
        return te.compute(
            (rows, tiles * width),
            lambda i, j: te.sum(a[i, k] * packed[j // width, k, j % width], axis=k),
            name="matmul",
        )
    padded_rows = (rows + SYMBOLIC_ROW_TILE - 1) // SYMBOLIC_ROW_TILE * SYMBOLIC_ROW_TILE
    product = te.compute(
        (padded_rows, tiles * width),
        lambda i, j: te.sum(a[te.min(i, rows - 1), k] * packed[j // width, k, j % width], axis=k),
        name="matmul",
    )
    return te.compute((rows, tiles * width), lambda i, j: product[i, j], name="matmul_rows")


def computed_from_constants(bb: relax.BlockBuilder, expr: relax.Expr, depth: int = 8) -> bool:
    """Whether ``expr`` is a constant or a function of constants alone (a transpose or reshape of a
    weight, before or after legalization), which the build folds into a constant: a weight.

    ViT-B/16's encoder projections and MLP (benchmarks/third_party_models.py) reach the matmul as
    ``permute_dims(W)`` bound to a variable, not as a constant; left unpacked, they ran at 333-394
    GFLOP/s where packed they run at 474-481 (Zen 5, 2 threads; the whole model 123 -> 96 ms)."""
    for _ in range(depth):
        if isinstance(expr, tvm.ir.expr.Constant):
            return True
        if isinstance(expr, relax.Var):
            bound = bb.lookup_binding(expr)
            if bound is None:
                return False
            expr = bound
            continue
        if not isinstance(expr, relax.Call):
            return False
        name = getattr(expr.op, "name", "")
        if name in ("relax.permute_dims", "relax.reshape"):
            expr = expr.args[0]
            continue
        if name == "relax.call_tir":  # a legalized transpose or reshape: every tensor argument a constant
            operands = expr.args[1]
            fields = list(operands.fields) if isinstance(operands, relax.Tuple) else [operands]
            return bool(fields) and all(computed_from_constants(bb, f, depth - 1) for f in fields)
        return False
    return False


def legalize_float_matmul(bb: relax.BlockBuilder, call: relax.Call, fallback: Any) -> relax.Expr | None:
    """A float32 ``[M, K] x [K, N]`` matmul by a constant weight on packed weights, else ``fallback``."""
    a, w = call.args
    target = tvm.target.Target.current(allow_none=True)
    a_shape, w_shape = shape_with_batch(a), static_shape(w)
    eligible = (
        target is not None
        and target.kind.name == "llvm"
        and computed_from_constants(bb, w)
        and a.ty.dtype == "float32"
        and w.ty.dtype == "float32"
        and str(call.attrs.out_dtype) in ("", "float32", "void")
        and a_shape is not None
        and w_shape is not None
        and len(a_shape) == 2
        and len(w_shape) == 2
    )
    if not eligible:
        return fallback(bb, call)
    (m, k), n = a_shape, w_shape[1]  # type: ignore[index, misc]
    width = tile_width(m if isinstance(m, int) else SYMBOLIC_ROW_TILE, n, k, target)
    if width is None or (width == n and isinstance(m, int)):  # one tile spans the whole weight: already packed
        return fallback(bb, call)  # (symbolic rows still need packed_dense's whole row tiles)
    packed = bb.emit_te(pack_dense_weight, w, width, primfunc_name_hint="pack_dense_weight")
    return bb.call_te(packed_dense, a, packed, primfunc_name_hint="matmul")
