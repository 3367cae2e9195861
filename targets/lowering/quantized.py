"""Integer compute for quantized graphs: QDQ patterns become int8 x int8 -> int32 kernels.

Two kinds of converters are registered with the lowering (``targets/lowering/lower.py``):

- graphopt's quantization ops (``quantize``, ``dequantize``, ``dequantize_per_channel``,
  ``fake_quantize_dynamic``) get their reference semantics in Relax, so any quantized graph lowers;
- the exported ``addmm``/``mm``/``bmm``/``convolution`` converters are wrapped: when their inputs
  are ``dequantize(quantize(x))`` (possibly through views, permutes, expands) and a
  ``dequantize_per_channel`` weight, they emit the integer form instead::

      acc = matmul(q_x, q_w^T, out_dtype="int32")                 # or conv2d(q_x, q_w, out_dtype=int32)
      y   = float(acc - z_x * sum_k q_w) * (s_x * s_w[c]) + bias  # one dequantize epilogue

  which is exact algebra of the fake-quantized reference: ``sum_k (q_x - z_x) s_x * q_w s_w[c]``.
  Anything else falls back to TVM's own converter (float math on dequantized tensors), a product of
  float64 or integers to ``typed_matmul.py`` (TVM's converters fix its dtype to float32), and half
  inputs are computed in float32 and rounded once (``half_opmath.py``), as torch does.

The integer kernels are legalized on packed weights (targets/cpu/int8_kernels.py) and tensorized with
the CPU's dot-product instruction where the target has one: AVX-512 VNNI ``vpdpbusd`` (uint8 x int8;
int8 activations are shifted by +128) and, on aarch64 with ``+dotprod``, ``sdot`` (int8 x int8;
uint8 activations are shifted by -128); the shift is undone exactly in the int32 result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from tvm import relax

import graphopt.qdq_ops  # noqa: F401  (registers torch.ops.graphopt.*)
from graphopt.targets.lowering.conv_transpose3d import convert_transposed_3d
from graphopt.targets.lowering.converters import args_of
from graphopt.targets.lowering.half_opmath import frontend_converter, in_float32
from graphopt.targets.lowering.lower import register_converter
from graphopt.targets.lowering.typed_matmul import typed_addmm, typed_matmul

OPS = torch.ops.graphopt
_aten = torch.ops.aten
#: Layout-only ops that commute with a per-tensor dequantize, so the int8 tensor can take them.
_LAYOUT = {
    _aten.view.default,
    _aten._unsafe_view.default,
    _aten.reshape.default,
    _aten.permute.default,
    _aten.expand.default,
}


def _emit(importer: Any, expr: relax.Expr) -> relax.Expr:
    return importer.block_builder.emit(expr)


def _const(value: float | int, dtype: str) -> relax.Expr:
    return relax.const(value, dtype)


def _dtype(qmin: int) -> str:
    return "int8" if qmin < 0 else "uint8"


def _quantize_expr(importer: Any, x: relax.Expr, scale: Any, zero_point: Any, qmin: int, qmax: int) -> relax.Expr:
    scale = _const(scale, "float32") if isinstance(scale, float) else scale
    zero_point = _const(float(zero_point), "float32") if isinstance(zero_point, int) else zero_point
    shifted = relax.op.add(relax.op.round(relax.op.divide(x, scale)), zero_point)
    return _emit(importer, relax.op.astype(relax.op.clip(shifted, qmin, qmax), _dtype(qmin)))


# -- reference semantics of graphopt's ops ---------------------------------------------------------


def convert_quantize(node: fx.Node, importer: Any) -> relax.Expr:
    x, scale, zero_point, qmin, qmax = args_of(node)
    return _quantize_expr(importer, importer.env[x], float(scale), int(zero_point), int(qmin), int(qmax))


def convert_dequantize(node: fx.Node, importer: Any) -> relax.Expr:
    q, scale, zero_point = args_of(node)
    shifted = relax.op.subtract(relax.op.astype(importer.env[q], "float32"), _const(float(zero_point), "float32"))
    return _emit(importer, relax.op.multiply(shifted, _const(float(scale), "float32")))


def _channel_view(scales: relax.Expr, ndim: int, axis: int) -> relax.Expr:
    return relax.op.reshape(scales, [-1 if i == axis else 1 for i in range(ndim)])


def convert_dequantize_per_channel(node: fx.Node, importer: Any) -> relax.Expr:
    q, scales, axis = args_of(node)
    weight = importer.env[q]
    ndim = len(weight.ty.shape)
    view = _channel_view(importer.env[scales], ndim, int(axis) % ndim)
    return _emit(importer, relax.op.multiply(relax.op.astype(weight, "float32"), view))


def _dynamic_qparams(importer: Any, x: relax.Expr, qmin: int, qmax: int) -> tuple[relax.Expr, relax.Expr]:
    low = relax.op.minimum(relax.op.min(x), _const(0.0, "float32"))
    high = relax.op.maximum(relax.op.max(x), _const(0.0, "float32"))
    scale = _emit(
        importer,
        relax.op.maximum(
            relax.op.divide(relax.op.subtract(high, low), _const(float(qmax - qmin), "float32")),
            _const(1e-8, "float32"),
        ),
    )
    zero_point = relax.op.clip(
        relax.op.round(relax.op.subtract(_const(float(qmin), "float32"), relax.op.divide(low, scale))), qmin, qmax
    )
    return scale, _emit(importer, zero_point)


def convert_fake_quantize_dynamic(node: fx.Node, importer: Any) -> relax.Expr:
    x, qmin, qmax = args_of(node)
    scale, zero_point = _dynamic_qparams(importer, importer.env[x], int(qmin), int(qmax))
    q = relax.op.astype(_quantize_expr(importer, importer.env[x], scale, zero_point, int(qmin), int(qmax)), "float32")
    return _emit(importer, relax.op.multiply(relax.op.subtract(q, zero_point), scale))


# -- integer rewrites of the ops that consume dequantized tensors ---------------------------------


@dataclass
class IntegerOperand:
    """An int8/uint8 relax tensor with the (scale, zero point) that dequantizes it."""

    value: relax.Expr
    scale: relax.Expr  # float32 scalar
    zero_point: relax.Expr | int  # int32 scalar expr, or a literal


def _activation(node: Any, importer: Any) -> IntegerOperand | None:
    """The integer tensor behind a (possibly reshaped) ``dequantize``/``fake_quantize_dynamic``."""
    chain = []
    while isinstance(node, fx.Node) and node.target in _LAYOUT:
        chain.append(node)
        node = args_of(node)[0]
    if not isinstance(node, fx.Node):
        return None
    if node.target == OPS.dequantize.default and args_of(node)[0].target == OPS.quantize.default:
        value, scale, zero_point = (
            importer.env[args_of(node)[0]],
            _const(float(args_of(node)[1]), "float32"),
            int(args_of(node)[2]),
        )
    elif node.target == OPS.fake_quantize_dynamic.default:
        x, qmin, qmax = args_of(node)
        scale, zero_point_f = _dynamic_qparams(importer, importer.env[x], int(qmin), int(qmax))
        value = _quantize_expr(importer, importer.env[x], scale, zero_point_f, int(qmin), int(qmax))
        zero_point = _emit(importer, relax.op.astype(zero_point_f, "int32"))
    else:
        return None
    for layout in reversed(chain):
        if layout.target == _aten.permute.default:
            value = _emit(importer, relax.op.permute_dims(value, list(args_of(layout)[1])))
        else:  # the float conversion of this node already knows its (possibly symbolic) shape
            shape = importer.env[layout].ty.shape
            op = relax.op.broadcast_to if layout.target == _aten.expand.default else relax.op.reshape
            value = _emit(importer, op(value, shape))
    return IntegerOperand(value, scale, zero_point)


@dataclass
class IntegerWeight:
    """An int8 weight as the kernel consumes it, its per-channel scales, and the axes a channel sums over."""

    value: relax.Expr  # [K, N] for matmul, [O, I, kh, kw] for conv2d
    scales: relax.Expr  # float32, one per output channel
    reduce_axes: list[int]


def _is_dequantize_per_channel(node: Any, axis: int) -> bool:
    return (
        isinstance(node, fx.Node)
        and node.target == OPS.dequantize_per_channel.default
        and int(args_of(node)[2]) == axis
    )


def _matmul_weight(node: Any, importer: Any) -> IntegerWeight | None:
    """``permute(dequantize_per_channel(w, s, 0), [1, 0])`` (a Linear) or ``dequantize_per_channel(w, s, 1)`` (pretransposed)."""
    if isinstance(node, fx.Node) and node.target == _aten.permute.default and list(args_of(node)[1]) == [1, 0]:
        inner = args_of(node)[0]
        if _is_dequantize_per_channel(inner, 0):
            value = _emit(importer, relax.op.permute_dims(importer.env[args_of(inner)[0]]))
            return IntegerWeight(value, importer.env[args_of(inner)[1]], [0])
    if _is_dequantize_per_channel(node, 1) and len(importer.env[args_of(node)[0]].ty.shape) == 2:
        return IntegerWeight(importer.env[args_of(node)[0]], importer.env[args_of(node)[1]], [0])
    return None


def _conv_weight(node: Any, importer: Any) -> IntegerWeight | None:
    if _is_dequantize_per_channel(node, 0):
        return IntegerWeight(importer.env[args_of(node)[0]], importer.env[args_of(node)[1]], [1, 2, 3])
    return None


def _epilogue(importer: Any, acc: relax.Expr, x: IntegerOperand, weight: IntegerWeight, bias: Any) -> relax.Expr:
    """float(acc - z_x * sum_k q_w) * (s_x * s_w) + bias, per output channel (axis 1 of ``acc``)."""
    acc = _emit(importer, acc)
    ndim = len(acc.ty.shape)
    if not (isinstance(x.zero_point, int) and x.zero_point == 0):
        sums = _emit(importer, relax.op.sum(relax.op.astype(weight.value, "int32"), axis=weight.reduce_axes))
        zero_point = _const(x.zero_point, "int32") if isinstance(x.zero_point, int) else x.zero_point
        acc = relax.op.subtract(acc, relax.op.multiply(zero_point, _channel_view(sums, ndim, 1)))
    scale = relax.op.multiply(x.scale, _channel_view(weight.scales, ndim, 1))
    out = relax.op.multiply(relax.op.astype(acc, "float32"), scale)
    if bias is not None:
        out = relax.op.add(out, _channel_view(importer.env[bias], ndim, 1))
    return _emit(importer, out)


def _default(importer: Any, name: str) -> Callable[[fx.Node], relax.Expr]:
    """TVM's own converter for ``name``, half inputs computed in float32 as torch does (``half_opmath``)."""
    convert = frontend_converter(importer, name)
    return lambda node: in_float32(node, importer, convert)


def convert_addmm(node: fx.Node, importer: Any) -> relax.Expr:
    bias, a, b = args_of(node)[:3]
    plain = node.kwargs.get("beta", 1) == 1 and node.kwargs.get("alpha", 1) == 1
    x = _activation(a, importer) if plain else None
    weight = _matmul_weight(b, importer) if x is not None else None
    if x is None or weight is None:
        typed = typed_addmm(node, importer)
        return typed if typed is not None else _default(importer, "addmm.default")(node)
    return _epilogue(importer, relax.op.matmul(x.value, weight.value, out_dtype="int32"), x, weight, bias)


def _convert_matmul(name: str) -> Callable[[fx.Node, Any], relax.Expr]:
    def convert(node: fx.Node, importer: Any) -> relax.Expr:
        a, b = args_of(node)[:2]
        x = _activation(a, importer)
        weight = _matmul_weight(b, importer) if x is not None and name == "mm.default" else None
        if x is not None and weight is not None:
            return _epilogue(importer, relax.op.matmul(x.value, weight.value, out_dtype="int32"), x, weight, None)
        y = _activation(b, importer) if x is not None else None
        if x is None or y is None or not (x.zero_point == 0 and y.zero_point == 0):
            typed = typed_matmul(node, importer, a, b)
            return typed if typed is not None else _default(importer, name)(node)
        acc = _emit(importer, relax.op.matmul(x.value, y.value, out_dtype="int32"))
        return _emit(importer, relax.op.multiply(relax.op.astype(acc, "float32"), relax.op.multiply(x.scale, y.scale)))

    return convert


# A grouped or depthwise int8 conv sums few products (3x3 depthwise: 9): its int32 sum is then exact in
# float32 (|q_x * q_w| <= 255 * 128, so up to 2**24 / 32640 terms), and it runs on the float grouped
# and depthwise kernels, which the dot-product kernels do not cover (MobileNetV3-L int8 at batch 8 ran
# 2.5x slower than float32 with TVM's int32 grouped conv).
EXACT_FLOAT_TERMS = 2**24 // (255 * 128)


def convert_convolution(node: fx.Node, importer: Any) -> relax.Expr:
    data, kernel, bias, stride, padding, dilation, transposed, _, groups = args_of(node)
    x = _activation(data, importer) if not transposed and len(list(stride)) == 2 else None
    weight = _conv_weight(kernel, importer) if x is not None else None
    if x is None or weight is None:
        transposed_3d = convert_transposed_3d(node, importer)
        return transposed_3d if transposed_3d is not None else _default(importer, "convolution.default")(node)
    value, pads = x.value, [int(p) for p in padding]
    if any(pads) and not (isinstance(x.zero_point, int) and x.zero_point == 0):
        # padding must hold the quantized zero (z_x), not 0, for the z_x correction to be exact
        pad_width = [0, 0, 0, 0, pads[0], pads[0], pads[1], pads[1]]
        value = _emit(importer, relax.op.nn.pad(value, pad_width, pad_value=float(x.zero_point)))  # type: ignore[arg-type]
        pads = [0, 0]
    terms = math.prod(int(d) for d in list(weight.value.ty.shape)[1:])  # products summed per output
    exact_in_float = int(groups) > 1 and terms <= EXACT_FLOAT_TERMS
    operands = (
        [relax.op.astype(v, "float32") for v in (value, weight.value)] if exact_in_float else [value, weight.value]
    )
    acc = relax.op.nn.conv2d(
        *operands,
        strides=list(stride),
        padding=pads,
        dilation=list(dilation),
        groups=int(groups),
        out_dtype="float32" if exact_in_float else "int32",
    )
    if exact_in_float:  # the float sum is the exact integer: the int32 epilogue follows unchanged
        acc = relax.op.astype(_emit(importer, acc), "int32")
    return _epilogue(importer, acc, x, weight, bias)


register_converter(OPS.quantize.default, convert_quantize)
register_converter(OPS.dequantize.default, convert_dequantize)
register_converter(OPS.dequantize_per_channel.default, convert_dequantize_per_channel)
register_converter(OPS.fake_quantize_dynamic.default, convert_fake_quantize_dynamic)
register_converter("addmm.default", convert_addmm)
register_converter("mm.default", _convert_matmul("mm.default"))
register_converter("bmm.default", _convert_matmul("bmm.default"))
register_converter("convolution.default", convert_convolution)
