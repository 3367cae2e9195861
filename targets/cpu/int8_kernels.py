"""Integer dot-product kernels: int8 matmuls and convolutions on packed weights (VNNI, Arm dot product).

``relax.matmul(A, W, out_dtype="int32")`` with A uint8/int8 ``[M, K]`` and W int8 ``[K, N]`` (what
``targets/lowering/quantized.py`` emits for a quantized Linear), and an NHWC/HWIO ``relax.nn.conv2d`` of the
same dtypes (a quantized Conv2d after the CPU layout pass) are legalized here into three steps:

1. ``pack_int8_weight``: W -> ``Wp[N/16, K/4, 16, 4]``, four consecutive k of 16 output channels
   together (N and K padded with zeros). W is a constant, so FoldConstant packs it once, at compile
   time; a conv's HWIO kernel is first read as ``[KH*KW*C4, CO]`` (input channels padded to C4, a
   multiple of 4);
2. ``int8_activation``: A in the activation dtype the target's dot product takes (``activation_dtype``):
   uint8 for VNNI (and the generic schedules), where int8 A is shifted by +128; int8 on an aarch64
   target with ``+dotprod`` (``sdot`` is signed x signed), where uint8 A is shifted by -128. A
   matmul's ``[M, K]`` has K padded to a multiple of 4; a conv's NHWC input gets its spatial padding
   (the shifted zero) and C4 channels;
3. ``int8_dense``: ``C[.., j] = sum_k A[.., k] * Wp[j/16, k/4, j%16, k%4]`` in int32 (for a conv, a
   direct convolution whose innermost reduction is 4 input channels), minus ``shift * sum_k W[k, j]``
   where A was shifted (exact: ``(a + s) w - s w = a w``), and cut back to N channels where N
   was padded.

This is the layout VNNI's ``vpdpbusd`` consumes: one instruction multiplies 4 uint8 activations by
4 int8 weights for 16 output channels and accumulates into 16 int32 lanes; ``vnni.Int8DotProduct``
(first in ``schedule.default_rules``) tensorizes ``int8_dense`` with it. Arm's ``sdot`` takes a
quarter of the same tile (4 channels x 4 k, 16 contiguous bytes of ``Wp``): ``arm.dot.ArmDotProduct``
tensorizes with it. Matmuls take this form on every target (elsewhere the generic rules schedule the
same compute); convolutions only where the target has VNNI or the Arm dot product, since without
either TVM's own direct convolution is faster. Anything else (grouped convs, symbolic shapes) keeps
TVM's own legalization. These are legalizations of the CPU pipeline only (``legalize_map``, passed to
``LegalizeOps`` by ``schedule.prepare_cpu_module``); TVM's registered ones stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tvm
from tvm import relax, te, tirx

from .packed_weights import legalize_float_conv2d, legalize_float_matmul, static_shape

LANES, GROUP = 16, 4  # output channels per vector, k values per 32-bit lane
DENSE_BLOCK = "int8_dense"
SHIFT = 128  # int8 activations are made unsigned by adding this (uint8 made signed by subtracting it)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _integer_operands(call: relax.Call) -> bool:
    a, w = call.args[:2]
    return (
        call.attrs.out_dtype == "int32"
        and a.ty.dtype in ("uint8", "int8")
        and w.ty.dtype == "int8"
        and static_shape(a) is not None
        and static_shape(w) is not None
    )


def pack_weight(w: te.Tensor) -> te.Tensor:
    """``[K, N]`` int8 -> ``[N/16, K/4, 16, 4]``, zero-padded."""
    k, n = (int(d) for d in w.shape)
    shape = (_round_up(n, LANES) // LANES, _round_up(k, GROUP) // GROUP, LANES, GROUP)

    def packed(jo: Any, ko: Any, ji: Any, ki: Any) -> Any:
        row, column = ko * GROUP + ki, jo * LANES + ji
        inside = tirx.all(row < k, column < n)
        return tirx.if_then_else(inside, w[tirx.min(row, k - 1), tirx.min(column, n - 1)], tirx.const(0, "int8"))

    return te.compute(shape, packed, name="pack_int8_weight")


def _target_has_arm_dotprod() -> bool:
    from graphopt.targets.arm.dot import has_arm_dotprod

    target = tvm.target.Target.current(allow_none=True)
    return target is not None and has_arm_dotprod(target)


def activation_dtype() -> str:
    """The activation dtype of ``int8_dense`` for the current target: int8 where ``sdot`` will run it
    (aarch64 with ``+dotprod``), uint8 everywhere else (VNNI's ``vpdpbusd``, the generic rules)."""
    return "int8" if _target_has_arm_dotprod() else "uint8"


def shift_of(dtype: str, to_dtype: str) -> int:
    """What is added to ``dtype`` activations to make them ``to_dtype``: +128, -128 or 0."""
    if dtype == to_dtype:
        return 0
    return SHIFT if to_dtype == "uint8" else -SHIFT


def _converted(value: Any, dtype: str, to_dtype: str) -> Any:
    shift = shift_of(dtype, to_dtype)
    return (value.astype("int32") + shift).astype(to_dtype) if shift else value


def shifted_activation(a: te.Tensor, to_dtype: str = "uint8") -> te.Tensor:
    """``[M, K]`` -> ``to_dtype`` ``[M, K4]`` (shifted by ``shift_of(a.dtype, to_dtype)``)."""
    m, k = (int(d) for d in a.shape)

    def value(i: Any, kk: Any) -> Any:
        element = _converted(a[i, tirx.min(kk, k - 1)], a.dtype, to_dtype)
        return tirx.if_then_else(kk < k, element, tirx.const(0, to_dtype))

    return te.compute((m, _round_up(k, GROUP)), value, name="int8_activation")


def padded_activation(
    data: te.Tensor, pads: tuple[int, int, int, int], channels4: int, to_dtype: str = "uint8"
) -> te.Tensor:
    """NHWC ``data`` -> ``to_dtype`` ``[N, H', W', C4]``: spatial padding holds the (shifted) zero,
    channels are padded to a multiple of 4 (their weights are zero, so any value would do)."""
    batch, height, width, channels = (int(d) for d in data.shape)
    top, left, bottom, right = pads
    zero = tirx.const(shift_of(data.dtype, to_dtype), to_dtype)

    def value(b: Any, h: Any, w: Any, c: Any) -> Any:
        y, x = h - top, w - left
        inside = tirx.all(y >= 0, y < height, x >= 0, x < width, c < channels)
        clamp = (tirx.max(tirx.min(y, height - 1), 0), tirx.max(tirx.min(x, width - 1), 0), tirx.min(c, channels - 1))
        return tirx.if_then_else(inside, _converted(data[(b, *clamp)], data.dtype, to_dtype), zero)

    shape = (batch, height + top + bottom, width + left + right, channels4)
    return te.compute(shape, value, name="int8_activation")


def conv_weight_rows(kernel: te.Tensor, channels4: int) -> te.Tensor:
    """HWIO ``[KH, KW, CI, CO]`` -> ``[KH*KW*C4, CO]``, row ``(kh*KW + kw)*C4 + c`` (zero for c >= CI)."""
    kh_size, kw_size, channels, out_channels = (int(d) for d in kernel.shape)

    def value(row: Any, co: Any) -> Any:
        tap, c = row // channels4, row % channels4
        element = kernel[tap // kw_size, tap % kw_size, tirx.min(c, channels - 1), co]
        return tirx.if_then_else(c < channels, element, tirx.const(0, "int8"))

    return te.compute((kh_size * kw_size * channels4, out_channels), value, name="int8_weight_rows")


def conv_dense(
    a: te.Tensor, wp: te.Tensor, kernel: tuple[int, int], attrs: Any, out_shape: tuple[int, ...]
) -> te.Tensor:
    """``C[b, oh, ow, j] = sum_{kh, kw, c} A[b, oh*sh + kh*dh, ow*sw + kw*dw, c] * Wp[j/16, row/4, j%16, c%4]``
    on the padded activation: a direct convolution whose innermost 4 channels are one VNNI group."""
    kh_size, kw_size = kernel
    channels4 = int(a.shape[3])
    stride_h, stride_w = (int(v) for v in attrs.strides)
    dilation_h, dilation_w = (int(v) for v in attrs.dilation)
    kh = te.reduce_axis((0, kh_size), name="kh")
    kw = te.reduce_axis((0, kw_size), name="kw")
    c = te.reduce_axis((0, channels4), name="c")

    def compute(b: Any, oh: Any, ow: Any, j: Any) -> Any:
        pixel = a[b, oh * stride_h + kh * dilation_h, ow * stride_w + kw * dilation_w, c].astype("int32")
        group = (kh * kw_size + kw) * (channels4 // GROUP) + c // GROUP
        return te.sum(pixel * wp[j // LANES, group, j % LANES, c % GROUP].astype("int32"), axis=[kh, kw, c])

    return te.compute(out_shape, compute, name=DENSE_BLOCK)


def dense(a: te.Tensor, wp: te.Tensor, out_shape: tuple[int, ...]) -> te.Tensor:
    """``C[i, j] = sum_k A[i, k] * Wp[j/16, k/4, j%16, k%4]``, ``out_shape`` ``[M, N']`` (N' padded)."""
    k = te.reduce_axis((0, int(a.shape[1])), name="k")
    return te.compute(
        out_shape,
        lambda i, j: te.sum(
            a[i, k].astype("int32") * wp[j // LANES, k // GROUP, j % LANES, k % GROUP].astype("int32"), axis=k
        ),
        name=DENSE_BLOCK,
    )


def _column_offsets(w: te.Tensor, shift: int) -> te.Tensor:
    k = te.reduce_axis((0, int(w.shape[0])), name="k")
    return te.compute((int(w.shape[1]),), lambda j: te.sum(w[k, j].astype("int32") * shift, axis=k), name="shift_sums")


def _finish(c: te.Tensor, offsets: te.Tensor | None, channels: int) -> te.Tensor:
    """Subtract the shift's column sums (if any) and drop the padded channels."""
    shape = [*c.shape[:-1], channels]

    def value(*indices: Any) -> Any:
        out = c[indices]
        return out - offsets[indices[-1]] if offsets is not None else out

    return te.compute(shape, value, name="int8_finish")


def _emit_dense(
    bb: relax.BlockBuilder,
    kernel: Any,
    activation: relax.Expr,
    weight_kn: relax.Expr,
    out_shape: list[int],
    shift: int,
) -> relax.Expr:
    """Pack, multiply (``kernel(activation, packed, padded_shape)``), and undo the shift/padding:
    the common tail of both legalizations."""
    channels = out_shape[-1]
    padded = (*out_shape[:-1], _round_up(channels, LANES))
    packed = bb.emit_te(pack_weight, weight_kn, primfunc_name_hint="pack_int8_weight")
    # The last step is returned as a call, not emitted: LegalizeOps binds it to the original
    # variable, where an emitted one would leave a var-to-var binding that stops FuseOps from
    # fusing the dequantize epilogue into the kernel.
    if not shift and padded[-1] == channels:
        return bb.call_te(kernel, activation, packed, padded, primfunc_name_hint=DENSE_BLOCK)
    result = bb.emit_te(kernel, activation, packed, padded, primfunc_name_hint=DENSE_BLOCK)
    offsets = bb.emit_te(_column_offsets, weight_kn, shift, primfunc_name_hint="int8_shift_sums") if shift else None
    return bb.call_te(_finish, result, offsets, channels, primfunc_name_hint="int8_finish")


_DEFAULT_MATMUL = tvm.ir.Op.get("relax.matmul").get_attr("FLegalize")
_DEFAULT_CONV2D = tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")


def legalize_matmul(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """2-d int8 matmuls through packed weights (see the module docstring); others as TVM does."""
    a, w = call.args
    if not _integer_operands(call) or len(static_shape(a) or []) != 2 or len(static_shape(w) or []) != 2:
        return legalize_float_matmul(bb, call, _DEFAULT_MATMUL)
    to_dtype = activation_dtype()
    activation = bb.emit_te(shifted_activation, a, to_dtype, primfunc_name_hint="int8_activation")
    m, n = static_shape(a)[0], static_shape(w)[1]  # type: ignore[index]
    return _emit_dense(bb, dense, activation, w, [m, n], shift=shift_of(a.ty.dtype, to_dtype))


def _target_has_vnni() -> bool:
    from graphopt.targets.cpu.vnni import has_vnni

    target = tvm.target.Target.current(allow_none=True)
    return target is not None and has_vnni(target)


def legalize_conv2d(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """NHWC int8 convolutions as direct dot-product convolutions on packed weights where the target has
    VNNI or the Arm dot product; others as TVM does."""
    attrs = call.attrs
    eligible = (
        _integer_operands(call)
        and attrs.data_layout == "NHWC"
        and attrs.kernel_layout == "HWIO"
        and attrs.out_layout == "NHWC"
        and int(attrs.groups) == 1
        and static_shape(call) is not None
        and (_target_has_vnni() or _target_has_arm_dotprod())
    )
    if not eligible:  # float32 convs on CPUs: packed weights too (targets/cpu/packed_weights.py)
        return legalize_float_conv2d(bb, call, _DEFAULT_CONV2D)
    data, kernel = call.args
    kh, kw, ci, _ = static_shape(kernel)  # type: ignore[misc]
    out_shape = static_shape(call)
    assert out_shape is not None
    channels4 = _round_up(ci, GROUP)
    pads = tuple(int(p) for p in attrs.padding)  # top, left, bottom, right
    to_dtype = activation_dtype()
    activation = bb.emit_te(padded_activation, data, pads, channels4, to_dtype, primfunc_name_hint="int8_activation")
    weight_kn = bb.emit_te(conv_weight_rows, kernel, channels4, primfunc_name_hint="int8_weight_rows")

    def kernel_fn(a: te.Tensor, wp: te.Tensor, shape: tuple[int, ...]) -> te.Tensor:
        return conv_dense(a, wp, (kh, kw), attrs, shape)

    return _emit_dense(bb, kernel_fn, activation, weight_kn, out_shape, shift=shift_of(data.ty.dtype, to_dtype))


def legalize_map() -> dict[str, Callable[[relax.BlockBuilder, relax.Call], relax.Expr]]:
    """The CPU/ARM legalizations of matmul and conv2d, for ``LegalizeOps(customize_legalize_map=...)``
    in the CPU pipeline (``schedule.prepare_cpu_module``). An explicit step rather than a global
    ``FLegalize`` registration, so importing this module changes no other build."""
    return {"relax.matmul": legalize_matmul, "relax.nn.conv2d": legalize_conv2d}
