"""graphopt's own converters for ATen ops TVM 0.27's torch frontend lacks or gets partly wrong.

- ``adaptive_max_pool2d``: missing from the frontend. When the input size is a multiple of the
  output size (global max pooling, 8x8 -> 2x2) it is exactly ``max_pool2d`` with kernel = stride
  = input / output; other sizes are reported as unsupported rather than approximated.
- ``max_pool3d_with_indices``: the frontend returns zeros as the indices, so a graph that uses them
  would be silently wrong; such nodes are reported as unsupported. (2-d pooling computes its
  indices: ``pool_indices.py``.)

- ``amax`` / ``amin``: missing from the frontend; exactly relax's ``max`` / ``min`` reductions over the
  same dims (all dims when none are given), keeping them with ``keepdim``; a bool tensor is reduced as
  uint8 0/1 (TVM has no initial value for a bool max, the build failed) and cast back.
- ``prod.dim_int`` (``x.prod(dim)``): missing; relax's ``prod`` over that dim.
- ``max.dim`` / ``min.dim`` (``x.max(dim=2)``): the frontend makes a ``topk`` of k=1, whose TOPI
  kernel is not a schedulable block (the CPU schedule step failed on it); here a ``max`` and an
  ``argmax`` over the dim, which give the same values and the first index of the maximum.

- ``slice.Tensor`` to a symbolic end (``position_ids[:, :seq]`` with a dynamic sequence length): the
  frontend clamps the end to the sliced size, ``min(seq, 32)``, which TVM cannot prove equal to ``seq``
  (the bound on ``seq`` is not in its arithmetic), so every shape downstream was unknown. Where torch's
  own shape reasoning (which knows the bound) gives the slice exactly ``end`` elements, the slice is
  emitted as in bounds (``assume_inbound``), of size ``end``; any other slice goes to the frontend.

- ``cosh`` / ``sinh``: the frontend's ops legalize to TIR intrinsics TVM's LLVM backend does not know
  (the build failed); written with ``exp`` here.
- ``elu`` (what ``selu`` decomposes to: ``elu(x, alpha, scale=1.0507, input_scale)``): the frontend
  reads ``alpha`` only, so SELU's outputs were 5% off; here with all three.
- ``view.dtype`` (ONNX BitCast, ``x.view(torch.int32)``): missing; to a type of the same width it is
  TOPI's ``reinterpret`` of the same bits, bool to uint8 (torch stores a bool as one byte 0/1) a cast;
  a view that changes the width changes the shape and is reported as unsupported.
- ``_linalg_det`` (ONNX Det): missing; for matrices up to 4x4 the Leibniz sum over the n! permutations
  of products of entries (24 terms at most), with relax's elementwise ops; its LU and pivots outputs
  are not computed, so a node using them, or a larger matrix, is reported as unsupported.
- ``bitwise_left_shift`` / ``bitwise_right_shift`` (and ``x << n`` / ``x >> n``, ``__lshift__`` /
  ``__rshift__``): missing; relax's ``left_shift`` / ``right_shift``.
- ``unfold`` (the windows of graphopt's ONNX AveragePool/MaxPool/LpPool): missing; a ``take`` of the
  windows' indices, reshaped and transposed to torch's layout (static shapes only).
- ``grid_sampler_2d``: the frontend passes torch's (N, H, W, 2) grid where relax's op reads (N, 2, H, W):
  a wrong output shape; transposed here.
- ``scatter_reduce`` (sum, prod, amax, amin, including the values already there): missing; relax's
  ``scatter_elements`` with that reduction.
- ``div.Tensor_mode`` (``a // b``, ``torch.div(..., rounding_mode=)``): the frontend's converter failed on
  integer operands; ``floor_divide``, or ``divide`` (truncating) and ``trunc``, here.
- ``sort.stable``: missing from the frontend; its ``sort.default`` is an ``argsort``, whose CPU kernel is
  a stable sort already.

A check returns why a node cannot be lowered, or None; ``lower.find_unsupported`` runs them so
every such node is listed with the others, before any translation starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx


def args_of(node: fx.Node) -> tuple[Any, ...]:
    """``node.args`` typed as what converters read: fx types them as any ``Argument`` (a wide union),
    while each ATen/graphopt op fixes what sits at each position (a node, an int list, a literal)."""
    return tuple(node.args)


def uses_indices(node: fx.Node) -> str | None:
    """The indices output (item 1) of a ``*_with_indices`` op is used: TVM would give zeros."""
    for user in node.users:
        if getattr(user.target, "__name__", None) == "getitem" and user.args[1] != 0:
            return "its indices output is used, which TVM's frontend does not compute"
    return None


def _adaptive_kernel(node: fx.Node) -> tuple[int, int] | str:
    source, output_size = args_of(node)[:2]
    value = source.meta.get("val")
    output = list(output_size)
    if value is None or value.dim() != 4:
        return "only 4-d (NCHW) inputs are supported"
    sizes = [value.shape[2], value.shape[3]]
    if not all(isinstance(s, int) for s in sizes):
        return "its spatial size is not static"
    if any(size % out for size, out in zip(sizes, output, strict=True)):
        return f"input size {sizes[0]}x{sizes[1]} is not a multiple of output size {output[0]}x{output[1]}"
    return sizes[0] // output[0], sizes[1] // output[1]


def check_adaptive_max_pool2d(node: fx.Node) -> str | None:
    kernel = _adaptive_kernel(node)
    return kernel if isinstance(kernel, str) else uses_indices(node)


def convert_adaptive_max_pool2d(node: fx.Node, importer: Any) -> Any:
    from tvm import relax

    kernel = _adaptive_kernel(node)
    assert not isinstance(kernel, str), kernel  # find_unsupported has reported these already
    x = importer.env[node.args[0]]
    pooled = importer.block_builder.emit(relax.op.nn.max_pool2d(x, pool_size=kernel, strides=kernel, layout="NCHW"))
    return importer.block_builder.emit(relax.Tuple([pooled, relax.op.zeros_like(pooled)]))


def _infinite_extreme(importer: Any, x: Any, reduced: Any, name: str, axis: Any, keepdims: bool) -> Any:
    """A float ``max``/``min`` that is -inf/+inf where every reduced element is: TVM starts a max from the
    lowest finite value (-3.4e38 for float32), so a row of -inf (a fully masked attention row, ONNX
    Attention's ``ReduceMax(bias) == -inf`` guard) would come out finite and the guard would miss it."""
    from tvm import relax

    if name not in ("max", "min") or not str(x.ty.dtype).startswith(("float", "bfloat")):
        return reduced
    bb = importer.block_builder
    infinity = relax.const(float("-inf") if name == "max" else float("inf"), str(x.ty.dtype))
    other = bb.emit(relax.op.astype(relax.op.not_equal(x, infinity), "uint8"))
    any_other = relax.op.astype(relax.op.max(other, axis=axis, keepdims=keepdims), "bool")
    return relax.op.where(any_other, bb.emit(reduced), infinity)


def _reduction(name: str) -> Callable[[fx.Node, Any], Any]:
    def convert(node: fx.Node, importer: Any) -> Any:
        from tvm import relax

        args = args_of(node)
        dims: Any = args[1] if len(args) > 1 else node.kwargs.get("dim", [])
        keepdim = bool(args[2] if len(args) > 2 else node.kwargs.get("keepdim", False))
        axis = [dims] if isinstance(dims, int) else (list(dims) if dims else None)
        x = importer.env[args[0]]
        if str(x.ty.dtype) == "bool":  # TVM has no min/max value of bool to start a max/min from
            x = importer.block_builder.emit(relax.op.astype(x, "uint8"))
        reduced: Any = getattr(relax.op, name)(x, axis=axis, keepdims=keepdim)
        reduced = _infinite_extreme(importer, x, reduced, name, axis, keepdim)
        value = node.meta.get("val")
        dtype = str(value.dtype).removeprefix("torch.") if isinstance(value, torch.Tensor) else None
        if dtype is not None and dtype != str(x.ty.dtype):  # torch's prod of int32 is int64
            reduced = relax.op.astype(reduced, dtype)
        return importer.block_builder.emit(reduced)

    return convert


def _reduction_with_indices(name: str) -> Callable[[fx.Node, Any], Any]:
    """``torch.max(x, dim)`` / ``torch.min(x, dim)``: (values, indices) as a ``max`` and an ``argmax``."""

    def convert(node: fx.Node, importer: Any) -> Any:
        from tvm import relax

        args = args_of(node)
        given: Any = args[1] if len(args) > 1 else node.kwargs["dim"]
        dim = int(given)
        keepdim = bool(args[2] if len(args) > 2 else node.kwargs.get("keepdim", False))
        x = importer.env[args[0]]
        bb = importer.block_builder
        boolean = str(x.ty.dtype) == "bool"  # reduced as uint8 0/1, as amax/amin are
        if boolean:
            x = bb.emit(relax.op.astype(x, "uint8"))
        values = _infinite_extreme(
            importer, x, getattr(relax.op, name)(x, axis=[dim], keepdims=keepdim), name, [dim], keepdim
        )
        values = relax.op.astype(values, "bool") if boolean else values
        indices = relax.op.astype(getattr(relax.op, f"arg{name}")(x, axis=dim, keepdims=keepdim), "int64")
        return bb.emit(relax.Tuple([bb.emit(values), bb.emit(indices)]))

    return convert


def convert_slice(node: fx.Node, importer: Any) -> Any:
    """``x[..., :end]`` with a symbolic ``end`` that torch proved in bounds: a slice of ``end`` elements."""
    from tvm import relax

    args = args_of(node)
    source, dim = args[0], int(args[1]) if len(args) > 1 else 0
    start, end = (args[2] if len(args) > 2 else None), (args[3] if len(args) > 3 else None)
    step = args[4] if len(args) > 4 else 1
    if start in (None, 0) and step == 1 and isinstance(end, fx.Node) and _torch_size_is(node, dim, end):
        x = importer.env[source]
        axis = dim + len(node.meta["val"].shape) if dim < 0 else dim
        sliced = relax.op.strided_slice(x, [axis], [0], [importer.env[end]], [1], assume_inbound=True)
        return importer.block_builder.emit(sliced)
    return importer._slice(node)


def _torch_size_is(node: fx.Node, dim: int, end: fx.Node) -> bool:
    """Whether torch's shape of ``node`` along ``dim`` is exactly the symbolic value ``end``."""
    value, bound = node.meta.get("val"), end.meta.get("val")
    size: Any = getattr(value, "shape", [None] * (abs(dim) + 1))[dim]
    if not isinstance(size, torch.SymInt) or not isinstance(bound, torch.SymInt):
        return False
    return bool(size.node.expr == bound.node.expr)


def convert_stable_sort(node: fx.Node, importer: Any) -> Any:
    """``torch.sort(x, stable=True)`` (ONNX TopK's ties-lower-index-first order): the frontend's ``sort``, an
    ``argsort`` whose CPU kernel (TVM's ``tvm.contrib.sort.argsort``) is ``std::stable_sort``."""
    return importer._sort(node)


def convert_cosh(node: fx.Node, importer: Any) -> Any:
    """``cosh(x) = (e^x + e^-x) / 2``: TVM's LLVM backend has no ``tirx.cosh`` intrinsic (the build failed)."""
    from tvm import relax

    x = importer.env[args_of(node)[0]]
    bb = importer.block_builder
    e = bb.emit(relax.op.exp(x))
    half = relax.const(0.5, x.ty.dtype)
    return bb.emit(relax.op.multiply(half, relax.op.add(e, relax.op.divide(relax.const(1.0, x.ty.dtype), e))))


def convert_sinh(node: fx.Node, importer: Any) -> Any:
    """``sinh``, which TVM's LLVM backend lacks: ``(e^x - e^-x) / 2``, and for ``|x| < 0.5``, where that
    difference cancels, its Taylor series to ``x^9`` (the first term left out is below 3e-10 of the value)."""
    from tvm import relax

    x = importer.env[args_of(node)[0]]
    dtype = x.ty.dtype
    bb = importer.block_builder
    e = bb.emit(relax.op.exp(x))
    wide = relax.op.multiply(relax.const(0.5, dtype), relax.op.subtract(e, relax.op.divide(relax.const(1.0, dtype), e)))
    square = bb.emit(relax.op.multiply(x, x))
    series: Any = relax.const(1.0 / 362880, dtype)
    for coefficient in (1.0 / 5040, 1.0 / 120, 1.0 / 6, 1.0):
        series = relax.op.add(relax.op.multiply(series, square), relax.const(coefficient, dtype))
    small = relax.op.less(relax.op.abs(x), relax.const(0.5, dtype))
    return bb.emit(relax.op.where(small, relax.op.multiply(series, x), wide))


def convert_elu(node: fx.Node, importer: Any) -> Any:
    """``elu(x, alpha, scale, input_scale) = scale * (x if x > 0 else alpha * (e^(input_scale * x) - 1))``."""
    from tvm import relax

    args = args_of(node)
    alpha, scale, input_scale = (
        float(args[i] if len(args) > i else node.kwargs.get(name, 1.0))  # type: ignore[arg-type]
        for i, name in ((1, "alpha"), (2, "scale"), (3, "input_scale"))
    )
    x = importer.env[args[0]]
    dtype = x.ty.dtype
    zero = relax.const(0.0, dtype)
    scaled = relax.op.multiply(x, relax.const(input_scale, dtype)) if input_scale != 1.0 else x
    negative = relax.op.multiply(
        relax.const(alpha, dtype), relax.op.subtract(relax.op.exp(scaled), relax.const(1.0, dtype))
    )
    inner = relax.op.add(relax.op.maximum(x, zero), relax.op.minimum(negative, zero))
    return importer.block_builder.emit(relax.op.multiply(relax.const(scale, dtype), inner) if scale != 1.0 else inner)


def convert_full_like(node: fx.Node, importer: Any) -> Any:
    """``full_like(x, inf or nan)``: ``relax.full_like`` (and ``relax.full``) fail to legalize a non-finite
    fill (topi's check reads the dtype as text), so it is the scalar broadcast to x's shape."""
    import math

    from tvm import relax

    args = args_of(node)
    value = args[1] if len(args) > 1 else node.kwargs.get("fill_value")
    if not isinstance(value, (int, float)) or math.isfinite(value):
        return importer._full_like(node)
    dtype = str(node.meta["val"].dtype).removeprefix("torch.")
    x = importer.env[args[0]]
    return importer.block_builder.emit(relax.op.broadcast_to(relax.const(value, dtype), x.ty.shape))


def _view_dtypes(node: fx.Node) -> tuple[torch.dtype, torch.dtype] | None:
    source, value = args_of(node)[0], node.meta.get("val")
    before = source.meta.get("val") if isinstance(source, fx.Node) else None
    if not isinstance(before, torch.Tensor) or not isinstance(value, torch.Tensor):
        return None
    return before.dtype, value.dtype


def check_view_dtype(node: fx.Node) -> str | None:
    dtypes = _view_dtypes(node)
    if dtypes is None:
        return "its dtypes are not known"
    before, after = dtypes
    if before.itemsize != after.itemsize:
        return f"a view from {before} to {after} changes the element width"
    if before.is_complex or after.is_complex:
        return "complex dtypes"
    return None


def convert_view_dtype(node: fx.Node, importer: Any) -> Any:
    """``x.view(dtype)`` of the same width: the same bits read as ``dtype`` (bool -> uint8: a cast of 0/1)."""
    from tvm import relax, topi

    dtypes = _view_dtypes(node)
    assert dtypes is not None  # find_unsupported has reported these already
    before, after = dtypes
    x = importer.env[args_of(node)[0]]
    name = str(after).removeprefix("torch.")
    if before == torch.bool or after == torch.bool:
        return importer.block_builder.emit(relax.op.astype(x, name))
    return importer.block_builder.emit_te(topi.reinterpret, x, name)


#: The largest matrix ``_linalg_det`` lowers (the Leibniz sum has n! terms).
MAX_DET_SIZE = 4


def _det_size(node: fx.Node) -> int | None:
    value = args_of(node)[0].meta.get("val")
    if not isinstance(value, torch.Tensor) or not all(isinstance(d, int) for d in value.shape):
        return None
    return int(value.shape[-1])


def check_linalg_det(node: fx.Node) -> str | None:
    size = _det_size(node)
    if size is None:
        return "its input shape is not static"
    if size > MAX_DET_SIZE:
        return f"a {size}x{size} matrix (up to {MAX_DET_SIZE}x{MAX_DET_SIZE} lowers)"
    for user in node.users:
        if getattr(user.target, "__name__", None) != "getitem" or user.args[1] != 0:
            return "its LU or pivots output is used"
    return None


def convert_linalg_det(node: fx.Node, importer: Any) -> Any:
    """``torch.linalg.det``: the sum over permutations p of sign(p) * prod_i x[..., i, p(i)]."""
    import itertools

    from tvm import relax

    size = _det_size(node)
    assert size is not None  # find_unsupported has reported larger or dynamic ones already
    shape = [int(d) for d in args_of(node)[0].meta["val"].shape]
    x, rank = importer.env[args_of(node)[0]], len(shape)
    bb = importer.block_builder

    def entry(i: int, j: int) -> Any:
        picked = relax.op.strided_slice(x, [rank - 2, rank - 1], [i, j], [i + 1, j + 1])
        return bb.emit(relax.op.squeeze(picked, [rank - 2, rank - 1]))

    entries = [[entry(i, j) for j in range(size)] for i in range(size)]
    total: Any = None
    for permutation in itertools.permutations(range(size)):
        inversions = sum(a > b for a, b in itertools.combinations(permutation, 2))
        term: Any = entries[0][permutation[0]]
        for i in range(1, size):
            term = relax.op.multiply(term, entries[i][permutation[i]])
        if inversions % 2:
            term = relax.op.negative(term)
        total = term if total is None else relax.op.add(total, term)
    det = bb.emit(total)
    pivots = relax.op.zeros(relax.ShapeExpr([*shape[:-2], size]), "int32")
    return bb.emit(relax.Tuple([det, bb.emit(relax.op.zeros_like(x)), bb.emit(pivots)]))


def _shift(name: str) -> Callable[[fx.Node, Any], Any]:
    """``bitwise_left_shift`` / ``bitwise_right_shift`` (missing from the frontend): relax's shift of the same name."""

    def convert(node: fx.Node, importer: Any) -> Any:
        from tvm import relax

        first, second = args_of(node)[:2]
        a = importer.env[first]
        b = importer.env[second] if isinstance(second, fx.Node) else relax.const(int(second), a.ty.dtype)
        return importer.block_builder.emit(getattr(relax.op, name)(a, b))

    return convert


def _unfold_sizes(node: fx.Node) -> tuple[list[int], int, int, int] | str:
    """(input shape, dim, window size, step) of ``x.unfold(dim, size, step)``, or why it cannot lower."""
    args = args_of(node)
    value = args[0].meta.get("val") if isinstance(args[0], fx.Node) else None
    if value is None or not all(isinstance(d, int) for d in value.shape):
        return "its input shape is not static"
    shape = [int(d) for d in value.shape]
    dim = int(args[1]) % max(len(shape), 1)
    return shape, dim, int(args[2]), int(args[3])


def check_unfold(node: fx.Node) -> str | None:
    sizes = _unfold_sizes(node)
    return sizes if isinstance(sizes, str) else None


def convert_unfold(node: fx.Node, importer: Any) -> Any:
    """``x.unfold(dim, size, step)`` (the windows of graphopt's ONNX pools): one ``take`` of every window's
    indices along ``dim``, reshaped to (windows, size) and the window axis moved last, as torch lays it out."""
    import numpy as np
    from tvm import relax

    sizes = _unfold_sizes(node)
    assert not isinstance(sizes, str), sizes  # find_unsupported has reported these already
    shape, dim, size, step = sizes
    count = (shape[dim] - size) // step + 1
    indices = (np.arange(count)[:, None] * step + np.arange(size)[None, :]).reshape(-1).astype("int64")
    bb = importer.block_builder
    taken = bb.emit(relax.op.take(importer.env[args_of(node)[0]], relax.const(indices), axis=dim))
    split = bb.emit(relax.op.reshape(taken, [*shape[:dim], count, size, *shape[dim + 1 :]]))
    order = [a for a in range(len(shape) + 1) if a != dim + 1] + [dim + 1]
    return bb.emit(relax.op.permute_dims(split, order))


def convert_grid_sampler_2d(node: fx.Node, importer: Any) -> Any:
    """``F.grid_sample``: torch's grid is (N, H_out, W_out, 2), the layout relax's ``grid_sample`` documents,
    but its shape rule and TOPI's kernel read (N, 2, H_out, W_out); the frontend passed torch's grid as is,
    so the output was (N, C, W_out, 2), wrong. Here the grid is transposed first."""
    from tvm import relax

    args = args_of(node)
    data, grid = importer.env[args[0]], importer.env[args[1]]
    interpolation = {0: "bilinear", 1: "nearest", 2: "bicubic"}[int(args[2]) if len(args) > 2 else 0]
    padding = {0: "zeros", 1: "border", 2: "reflection"}[int(args[3]) if len(args) > 3 else 0]
    align_corners = bool(args[4]) if len(args) > 4 else False
    bb = importer.block_builder
    rank = len(node.meta["val"].shape)  # 4, or 5 for grid_sampler_3d (TOPI's NCDHW kernel; bilinear is trilinear)
    channels_first = bb.emit(relax.op.permute_dims(grid, [0, rank - 1, *range(1, rank - 1)]))
    layout = "NCHW" if rank == 4 else "NCDHW"
    sampled = relax.op.image.grid_sample(
        data, channels_first, method=interpolation, layout=layout, padding_mode=padding, align_corners=align_corners
    )
    return bb.emit(sampled)


#: torch's scatter_reduce reductions -> relax ``scatter_elements``' (which, like ``include_self=True``,
#: combine with the values already there).
_SCATTER_REDUCTIONS = {"sum": "add", "prod": "mul", "amax": "max", "amin": "min"}


def check_scatter_reduce(node: fx.Node) -> str | None:
    args = args_of(node)
    reduce = args[4] if len(args) > 4 else node.kwargs.get("reduce")
    include_self = args[5] if len(args) > 5 else node.kwargs.get("include_self", True)
    if reduce not in _SCATTER_REDUCTIONS:
        return f"reduce='{reduce}'"
    return None if include_self else "include_self=False"


def convert_scatter_reduce(node: fx.Node, importer: Any) -> Any:
    """``x.scatter_reduce(dim, index, src, reduce)`` (missing from the frontend): relax's ``scatter_elements``."""
    from tvm import relax

    args = args_of(node)
    data, index, source = importer.env[args[0]], importer.env[args[2]], importer.env[args[3]]
    reduce = str(args[4] if len(args) > 4 else node.kwargs["reduce"])
    scattered = relax.op.scatter_elements(data, index, source, axis=int(args[1]), reduction=_SCATTER_REDUCTIONS[reduce])
    return importer.block_builder.emit(scattered)


def convert_div_mode(node: fx.Node, importer: Any) -> Any:
    """``torch.div(a, b, rounding_mode=...)`` (``a // b`` is ``"floor"``): the frontend's converter failed
    on integer operands. ``floor`` is relax's ``floor_divide``; ``trunc`` of integers is relax's
    ``divide`` (TIR's integer division truncates, as C's), of floats ``trunc(a / b)``."""
    from tvm import relax

    args = args_of(node)
    value = node.meta["val"]
    dtype = str(value.dtype).removeprefix("torch.")

    def operand(arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            x = importer.env[arg]
            return x if str(x.ty.dtype) == dtype else relax.op.astype(x, dtype)
        return relax.const(arg, dtype)

    a, b = operand(args[0]), operand(args[1])
    mode = node.kwargs.get("rounding_mode", args[2] if len(args) > 2 else None)
    if mode == "floor":
        result = relax.op.floor_divide(a, b)
    elif mode == "trunc":
        result = relax.op.divide(a, b) if not value.is_floating_point() else relax.op.trunc(relax.op.divide(a, b))
    else:
        result = relax.op.divide(a, b)
    return importer.block_builder.emit(result)


BUILTIN_CONVERTERS: dict[str, Callable[[fx.Node, Any], Any]] = {
    "div.Tensor_mode": convert_div_mode,
    "elu.default": convert_elu,
    "view.dtype": convert_view_dtype,
    "full_like.default": convert_full_like,
    "_linalg_det.default": convert_linalg_det,
    "scatter_reduce.two": convert_scatter_reduce,
    "grid_sampler_2d.default": convert_grid_sampler_2d,
    "grid_sampler_3d.default": convert_grid_sampler_2d,
    "unfold.default": convert_unfold,
    "bitwise_left_shift.Tensor": _shift("left_shift"),
    "bitwise_right_shift.Tensor": _shift("right_shift"),
    "bitwise_left_shift.Tensor_Scalar": _shift("left_shift"),
    "bitwise_right_shift.Tensor_Scalar": _shift("right_shift"),
    "__lshift__.Scalar": _shift("left_shift"),
    "__rshift__.Scalar": _shift("right_shift"),
    "__lshift__.Tensor": _shift("left_shift"),
    "__rshift__.Tensor": _shift("right_shift"),
    "cosh.default": convert_cosh,
    "sinh.default": convert_sinh,
    "sort.stable": convert_stable_sort,
    "adaptive_max_pool2d.default": convert_adaptive_max_pool2d,
    "amax.default": _reduction("max"),
    "amin.default": _reduction("min"),
    "prod.dim_int": _reduction("prod"),
    "max.dim": _reduction_with_indices("max"),
    "min.dim": _reduction_with_indices("min"),
    "slice.Tensor": convert_slice,
}

BUILTIN_CHECKS: dict[str, Callable[[fx.Node], str | None]] = {
    "view.dtype": check_view_dtype,
    "_linalg_det.default": check_linalg_det,
    "scatter_reduce.two": check_scatter_reduce,
    "unfold.default": check_unfold,
    "adaptive_max_pool2d.default": check_adaptive_max_pool2d,
    "max_pool3d_with_indices.default": uses_indices,
}
