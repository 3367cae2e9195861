"""Reference implementations of graphopt's quantization ops, as ``torch.library`` custom ops.

A quantized graph stays executable in PyTorch: these ops are the fake-quantized reference every
target is checked against. They are custom ops (``torch.ops.graphopt.*``) rather than
``torch.ops.quantized_decomposed`` because ``torch.export`` keeps custom ops opaque through its
decompositions, so the TVM lowering sees one node per quantize/dequantize and can pattern-match
them into integer compute.

Conventions: ``scale`` is a Python float and ``zero_point`` an int (literals in the graph, so a
lowering can fold them); the storage dtype follows from the range (``qmin < 0`` is int8, else
uint8). Rounding is half-to-even, as ``torch.round``.

The targets match the QDQ patterns around each linear/conv2d/matmul themselves
(targets/lowering/quantized.py) and lower them to integer compute; there are no fused ops here.
"""

from __future__ import annotations

import torch
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
