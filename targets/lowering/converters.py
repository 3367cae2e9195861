"""graphopt's own converters for ATen ops TVM 0.27's torch frontend lacks or gets partly wrong.

- ``adaptive_max_pool2d``: missing from the frontend. When the input size is a multiple of the
  output size (global max pooling, 8x8 -> 2x2) it is exactly ``max_pool2d`` with kernel = stride
  = input / output; other sizes are reported as unsupported rather than approximated.
- ``max_pool2d_with_indices`` (what ``max_pool2d`` decomposes to): the frontend returns zeros as
  the indices, so a graph that uses the indices (``MaxUnpool2d``, ``return_indices=True``) would
  be silently wrong; such nodes are reported as unsupported.

- ``amax`` / ``amin``: missing from the frontend; exactly relax's ``max`` / ``min`` reductions over the
  same dims (all dims when none are given), keeping them with ``keepdim``.
- ``max.dim`` / ``min.dim`` (``x.max(dim=2)``): the frontend makes a ``topk`` of k=1, whose TOPI
  kernel is not a schedulable block (the CPU schedule step failed on it); here a ``max`` and an
  ``argmax`` over the dim, which give the same values and the first index of the maximum.

- ``slice.Tensor`` to a symbolic end (``position_ids[:, :seq]`` with a dynamic sequence length): the
  frontend clamps the end to the sliced size, ``min(seq, 32)``, which TVM cannot prove equal to ``seq``
  (the bound on ``seq`` is not in its arithmetic), so every shape downstream was unknown. Where torch's
  own shape reasoning (which knows the bound) gives the slice exactly ``end`` elements, the slice is
  emitted as in bounds (``assume_inbound``), of size ``end``; any other slice goes to the frontend.

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


def _reduction(name: str) -> Callable[[fx.Node, Any], Any]:
    def convert(node: fx.Node, importer: Any) -> Any:
        from tvm import relax

        args = args_of(node)
        dims: Any = args[1] if len(args) > 1 else node.kwargs.get("dim", [])
        keepdim = bool(args[2] if len(args) > 2 else node.kwargs.get("keepdim", False))
        axis = list(dims) if dims else None
        return importer.block_builder.emit(getattr(relax.op, name)(importer.env[args[0]], axis=axis, keepdims=keepdim))

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
        values = getattr(relax.op, name)(x, axis=[dim], keepdims=keepdim)
        indices = relax.op.astype(getattr(relax.op, f"arg{name}")(x, axis=dim, keepdims=keepdim), "int64")
        bb = importer.block_builder
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


BUILTIN_CONVERTERS: dict[str, Callable[[fx.Node, Any], Any]] = {
    "sort.stable": convert_stable_sort,
    "adaptive_max_pool2d.default": convert_adaptive_max_pool2d,
    "amax.default": _reduction("max"),
    "amin.default": _reduction("min"),
    "max.dim": _reduction_with_indices("max"),
    "min.dim": _reduction_with_indices("min"),
    "slice.Tensor": convert_slice,
}

BUILTIN_CHECKS: dict[str, Callable[[fx.Node], str | None]] = {
    "adaptive_max_pool2d.default": check_adaptive_max_pool2d,
    "max_pool2d_with_indices.default": uses_indices,
    "max_pool3d_with_indices.default": uses_indices,
}
