"""Reference implementations of graphopt's quantization ops, as ``torch.library`` custom ops.

A quantized graph stays executable in PyTorch: these ops are the fake-quantized reference every
target is checked against. They are custom ops (``torch.ops.graphopt.*``) rather than
``torch.ops.quantized_decomposed`` because ``torch.export`` keeps custom ops opaque through its
decompositions, so the TVM lowering sees one node per quantize/dequantize and can pattern-match
them into integer compute.

Conventions: ``scale`` is a Python float and ``zero_point`` an int (literals in the graph, so a
lowering can fold them); the storage dtype follows from the range (``qmin < 0`` is int8, else
uint8). Rounding is half-to-even, as ``torch.round``.

The fused ``quantized_linear`` / ``quantized_conv2d`` / ``quantized_matmul`` ops are what the
targets rewrite QDQ patterns into before lowering; their reference is, by construction, exactly the
fake-quantized math of the pattern they replace.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def storage_dtype(qmin: int) -> torch.dtype:
    """int8 for signed ranges, uint8 for unsigned ones."""
    return torch.int8 if qmin < 0 else torch.uint8


def _quantize(x: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax).to(storage_dtype(qmin))


@torch.library.custom_op("graphopt::quantize", mutates_args=())
def quantize(x: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    """Float -> int8/uint8: ``clamp(round(x / scale) + zero_point, qmin, qmax)``."""
    return _quantize(x, scale, zero_point, qmin, qmax)


@quantize.register_fake
def _(x: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    return torch.empty_like(x, dtype=storage_dtype(qmin))


@torch.library.custom_op("graphopt::dequantize", mutates_args=())
def dequantize(q: Tensor, scale: float, zero_point: int) -> Tensor:
    """int8/uint8 -> float32: ``(q - zero_point) * scale``."""
    return (q.to(torch.int32) - zero_point).to(torch.float32) * scale


@dequantize.register_fake
def _(q: Tensor, scale: float, zero_point: int) -> Tensor:
    return torch.empty_like(q, dtype=torch.float32)


def _channel_view(scales: Tensor, ndim: int, axis: int) -> Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return scales.reshape(shape)


@torch.library.custom_op("graphopt::dequantize_per_channel", mutates_args=())
def dequantize_per_channel(q: Tensor, scales: Tensor, axis: int) -> Tensor:
    """Symmetric per-channel int8 weights -> float32: ``q * scales[channel]`` along ``axis``."""
    return q.to(torch.float32) * _channel_view(scales, q.dim(), axis)


@dequantize_per_channel.register_fake
def _(q: Tensor, scales: Tensor, axis: int) -> Tensor:
    return torch.empty_like(q, dtype=torch.float32)


def dynamic_qparams(x: Tensor, qmin: int, qmax: int) -> tuple[Tensor, Tensor]:
    """Run-time affine scale and zero point covering ``[min(x, 0), max(x, 0)]``."""
    low = torch.clamp(x.min(), max=0.0)
    high = torch.clamp(x.max(), min=0.0)
    scale = torch.clamp((high - low) / (qmax - qmin), min=1e-8)
    zero_point = torch.clamp(torch.round(qmin - low / scale), qmin, qmax)
    return scale, zero_point


@torch.library.custom_op("graphopt::fake_quantize_dynamic", mutates_args=())
def fake_quantize_dynamic(x: Tensor, qmin: int, qmax: int) -> Tensor:
    """Quantize and dequantize with a scale measured on ``x`` itself at run time (dynamic quantization)."""
    scale, zero_point = dynamic_qparams(x, qmin, qmax)
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


@fake_quantize_dynamic.register_fake
def _(x: Tensor, qmin: int, qmax: int) -> Tensor:
    return torch.empty_like(x)


# -- fused integer ops: what targets rewrite QDQ patterns into -----------------------------------


def _fake_input(x: Tensor, scale: float, zero_point: int, qmin: int, qmax: int) -> Tensor:
    if scale <= 0:  # dynamic: scale measured at run time
        return fake_quantize_dynamic(x, qmin, qmax)
    return dequantize(quantize(x, scale, zero_point, qmin, qmax), scale, zero_point)


@torch.library.custom_op("graphopt::quantized_linear", mutates_args=())
def quantized_linear(
    x: Tensor,
    scale: float,
    zero_point: int,
    qmin: int,
    qmax: int,
    weight: Tensor,
    weight_scales: Tensor,
    bias: Tensor | None,
) -> Tensor:
    """``linear(dequantize(quantize(x)), dequantize_per_channel(weight), bias)``; scale <= 0: dynamic."""
    return F.linear(
        _fake_input(x, scale, zero_point, qmin, qmax), dequantize_per_channel(weight, weight_scales, 0), bias
    )


@quantized_linear.register_fake
def _(x, scale, zero_point, qmin, qmax, weight, weight_scales, bias):  # type: ignore[no-untyped-def]
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.custom_op("graphopt::quantized_conv2d", mutates_args=())
def quantized_conv2d(
    x: Tensor,
    scale: float,
    zero_point: int,
    qmin: int,
    qmax: int,
    weight: Tensor,
    weight_scales: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> Tensor:
    """``conv2d(dequantize(quantize(x)), dequantize_per_channel(weight), bias, ...)``."""
    return F.conv2d(
        _fake_input(x, scale, zero_point, qmin, qmax),
        dequantize_per_channel(weight, weight_scales, 0),
        bias,
        stride,
        padding,
        dilation,
        groups,
    )


@quantized_conv2d.register_fake
def _(x, scale, zero_point, qmin, qmax, weight, weight_scales, bias, stride, padding, dilation, groups):  # type: ignore[no-untyped-def]
    return F.conv2d(x, weight.to(x.dtype), None, stride, padding, dilation, groups)


@torch.library.custom_op("graphopt::quantized_matmul", mutates_args=())
def quantized_matmul(
    a: Tensor, a_scale: float, a_zero_point: int, b: Tensor, b_scale: float, b_zero_point: int, qmin: int, qmax: int
) -> Tensor:
    """``matmul`` of two activations, each quantized per tensor."""
    return torch.matmul(
        _fake_input(a, a_scale, a_zero_point, qmin, qmax), _fake_input(b, b_scale, b_zero_point, qmin, qmax)
    )


@quantized_matmul.register_fake
def _(a, a_scale, a_zero_point, b, b_scale, b_zero_point, qmin, qmax):  # type: ignore[no-untyped-def]
    return torch.matmul(a, b)
