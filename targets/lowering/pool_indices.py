"""``max_pool2d_with_indices`` with its indices computed: what ``MaxUnpool2d`` (SegNet, ENet) and
``nn.MaxPool2d(return_indices=True)`` need, and ONNX MaxPool's ``Indices`` output.

TVM 0.27's frontend returns zeros as the indices. Where the indices are used, one TE reduction over
each window gives both outputs: an argmax whose index is torch's, the position ``h * W + w`` in the
unpadded input plane, and its value (relax's ``max_pool2d`` gives -3.4e38, not -inf, for a window of
-inf only). Where they are not, the values stay relax's ``max_pool2d``, which the CPU schedules know.

Which position wins follows torch's CPU kernel (``if (val > maxval || isnan(val))`` over the window
in row-major order, starting from ``-inf`` at the first in-bounds position): the first maximum; a
NaN beats any number and the last NaN wins; a window of only ``-inf`` gives its first in-bounds
position. The reducer's combine encodes that order as a total order on (value, index) pairs, so it
gives the same answer in whatever order a schedule visits the window.
"""

from __future__ import annotations

from typing import Any

from torch import fx

from graphopt.targets.lowering.converters import args_of, uses_indices

#: index of a padded (out-of-bounds) window position: larger than any real one, so it never wins a tie
_PADDED = 2**62


def _pool_arguments(node: fx.Node) -> tuple[list[int], list[int], list[int], list[int]]:
    args = args_of(node)
    kernel = list(args[1])
    stride = list(args[2]) if len(args) > 2 and args[2] else kernel
    padding = list(args[3]) if len(args) > 3 else [0, 0]
    dilation = list(args[4]) if len(args) > 4 else [1, 1]

    def pair(values: list[int]) -> list[int]:
        return values * 2 if len(values) == 1 else values

    return pair(kernel), pair(stride), pair(padding), pair(dilation)


def _argmax_window(
    data: Any, out_shape: list[int], kernel: list[int], stride: list[int], padding: list[int], dilation: list[int]
) -> Any:
    from tvm import te, tirx

    height, width = int(data.shape[-2]), int(data.shape[-1])
    dtype = data.dtype

    def combine(x: Any, y: Any) -> Any:
        x_index, x_value = x
        y_index, y_value = y
        x_nan, y_nan = tirx.isnan(x_value), tirx.isnan(y_value)
        numbers = tirx.all(
            tirx.Not(x_nan),
            tirx.Not(y_nan),
            tirx.any(y_value > x_value, tirx.all(y_value == x_value, y_index < x_index)),
        )
        nans = tirx.all(x_nan, y_nan, y_index > x_index)
        take = tirx.any(numbers, nans, tirx.all(y_nan, tirx.Not(x_nan)))
        return tirx.Select(take, y_index, x_index), tirx.Select(take, y_value, x_value)

    def identity(index_dtype: str, value_dtype: str) -> Any:
        return tirx.const(_PADDED, index_dtype), tirx.const(float("-inf"), value_dtype)

    argmax = te.comm_reducer(combine, identity, name="window_argmax")
    kh = te.reduce_axis((0, kernel[0]), name="kh")
    kw = te.reduce_axis((0, kernel[1]), name="kw")

    def element(*indices: Any) -> Any:
        *outer, oh, ow = indices
        h = oh * stride[0] - padding[0] + kh * dilation[0]
        w = ow * stride[1] - padding[1] + kw * dilation[1]
        inside = tirx.all(h >= 0, h < height, w >= 0, w < width)
        value = data[(*outer, tirx.max(tirx.min(h, height - 1), 0), tirx.max(tirx.min(w, width - 1), 0))]
        position = tirx.Select(inside, (h * width + w).astype("int64"), tirx.const(_PADDED, "int64"))
        value = tirx.Select(inside, value, tirx.const(float("-inf"), dtype))
        return argmax((position, value), axis=[kh, kw])

    index, value = te.compute(out_shape, element, name="pool_argmax")
    return [value, index]


def convert_max_pool2d_with_indices(node: fx.Node, importer: Any) -> Any:
    """(values, indices) of ``max_pool2d_with_indices``: relax's ``max_pool2d`` and the window argmax."""
    from tvm import relax

    kernel, stride, padding, dilation = _pool_arguments(node)
    args = args_of(node)
    ceil_mode = bool(args[5]) if len(args) > 5 else False
    x = importer.env[args[0]]
    bb = importer.block_builder
    if uses_indices(node) is None:  # the values alone, as the frontend gives them
        values = bb.emit(
            relax.op.nn.max_pool2d(
                x,
                pool_size=kernel,
                strides=stride,
                padding=padding,
                dilation=dilation,
                ceil_mode=ceil_mode,
                layout="NCHW",
            )
        )
        return bb.emit(relax.Tuple([values, relax.op.zeros_like(values)]))
    shape = [int(s) for s in node.meta["val"][0].shape]  # static: check_max_pool2d_with_indices
    return bb.emit_te(_argmax_window, x, shape, kernel, stride, padding, dilation, primfunc_name_hint="pool_argmax")


def check_max_pool2d_with_indices(node: fx.Node) -> str | None:
    if uses_indices(node) is None:
        return None
    value = node.meta.get("val")
    if value is None or not all(isinstance(s, int) for s in value[0].shape):
        return "its indices need a static output shape"
    if not value[0].is_floating_point():
        return "its indices are computed for floating-point inputs only"
    return None
