"""ONNX QuantizeLinear / DequantizeLinear in full generality (run-time scales, per-axis, blocked,
every quantized type) and QLinearMatMul / MatMulInteger / ConvInteger / QLinearConv, as float math.

``graphopt.onnx.converters`` lowers the QDQ pattern ONNX Runtime writes (constant per-tensor or
per-channel int8/uint8 scales) to graphopt's own quantization ops, which become int8 kernels; the
modules here are for everything else, so such models import and compute the op's definition
exactly (the onnx reference: round half to even, saturate to the type's range; narrow types are
carried as ``graphopt.onnx.narrow`` says), but run in floating point rather than as integer kernels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graphopt.onnx.narrow import cast_narrow

#: integer quantized ONNX types: (lowest, highest, torch dtype that holds them)
_RANGES: dict[int, tuple[int, int, torch.dtype]] = {
    2: (0, 255, torch.uint8),
    3: (-128, 127, torch.int8),
    4: (0, 65535, torch.uint16),
    5: (-32768, 32767, torch.int16),
    21: (0, 15, torch.uint8),
    22: (-8, 7, torch.int8),
    25: (0, 3, torch.uint8),
    26: (-2, 1, torch.int8),
}


def broadcast(value: torch.Tensor, shape: torch.Size, axis: int, block: int) -> torch.Tensor:
    """A scale or zero point shaped to broadcast over ``shape`` (scalar, per-axis or blocked)."""
    if value.dim() == 0 or value.numel() == 1:
        return value.reshape(())
    axis %= len(shape)
    if not block:
        dims = [1] * len(shape)
        dims[axis] = value.numel()
        return value.reshape(dims)
    return value.repeat_interleave(block, dim=axis).narrow(axis, 0, shape[axis])


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.int64) if t.dtype in (torch.uint16, torch.uint32, torch.uint64) else t


class Quantize(nn.Module):
    """ONNX QuantizeLinear to ONNX type ``onnx_type`` (known from the model at import)."""

    def __init__(self, onnx_type: int, axis: int, block: int, saturate: bool) -> None:
        super().__init__()
        self.onnx_type, self.axis, self.block, self.saturate = onnx_type, axis, block, saturate

    def forward(self, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None) -> torch.Tensor:
        scaled = x.to(torch.float32) / broadcast(scale, x.shape, self.axis, self.block).to(torch.float32)
        zero = broadcast(_wide(zero_point), x.shape, self.axis, self.block) if zero_point is not None else None
        if self.onnx_type in _RANGES:
            low, high, dtype = _RANGES[self.onnx_type]
            value = torch.round(scaled).to(torch.int64)
            if zero is not None:
                value = value + zero.to(torch.int64)
            return value.clamp(low, high).to(dtype)
        if self.onnx_type == 23:  # float4e2m1: the zero point is added before the cast
            return cast_narrow(scaled + zero.to(torch.float32) if zero is not None else scaled, 23)
        return cast_narrow(scaled, self.onnx_type, self.saturate)  # float8: the zero point is ignored


class Dequantize(nn.Module):
    """ONNX DequantizeLinear: (x - zero_point) * scale in float32, in ``dtype`` (the scale's by default)."""

    def __init__(self, axis: int, block: int, dtype: torch.dtype | None, subtract_zero: bool) -> None:
        super().__init__()
        self.axis, self.block, self.dtype, self.subtract_zero = axis, block, dtype, subtract_zero

    def forward(self, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None) -> torch.Tensor:
        value = _wide(x).to(torch.float32)
        if zero_point is not None and self.subtract_zero:
            value = value - broadcast(_wide(zero_point), x.shape, self.axis, self.block).to(torch.float32)
        result = value * broadcast(scale, x.shape, self.axis, self.block).to(torch.float32)
        return result.to(self.dtype or scale.dtype)


def _requantize(value: torch.Tensor, zero: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    info = torch.iinfo(dtype)
    if zero is not None:
        value = value + zero.to(torch.float64)
    return torch.round(value).clamp(info.min, info.max).to(dtype)


class QLinearMatMul(nn.Module):
    """ONNX QLinearMatMul: the exact integer product of the zero-point-shifted inputs, rescaled and
    requantized (round half to even, saturate), as the onnx reference computes it."""

    def forward(
        self,
        a: torch.Tensor,
        a_scale: torch.Tensor,
        a_zero: torch.Tensor,
        b: torch.Tensor,
        b_scale: torch.Tensor,
        b_zero: torch.Tensor,
        y_scale: torch.Tensor,
        y_zero: torch.Tensor | None = None,
    ) -> torch.Tensor:
        product = torch.matmul(a.to(torch.int64) - a_zero.to(torch.int64), b.to(torch.int64) - b_zero.to(torch.int64))
        factor = a_scale.to(torch.float32) * b_scale.to(torch.float32) / y_scale.to(torch.float32)
        value = product.to(torch.float32) * factor
        return _requantize(value.to(torch.float64), y_zero, y_zero.dtype if y_zero is not None else a.dtype)


class MatMulInteger(nn.Module):
    def forward(
        self, a: torch.Tensor, b: torch.Tensor, a_zero: torch.Tensor | None = None, b_zero: torch.Tensor | None = None
    ) -> torch.Tensor:
        left = a.to(torch.int64) - (a_zero.to(torch.int64) if a_zero is not None else 0)
        right = b.to(torch.int64) - (b_zero.to(torch.int64) if b_zero is not None else 0)
        return torch.matmul(left, right).to(torch.int32)


class ConvInteger(nn.Module):
    """ONNX ConvInteger (and QLinearConv around it): an exact convolution of the shifted integers,
    computed in float64 (exact for int8 products summed over fewer than 2**37 terms)."""

    def __init__(self, convolution: nn.Module) -> None:
        super().__init__()
        self.convolution = convolution

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, x_zero: torch.Tensor | None = None, w_zero: torch.Tensor | None = None
    ) -> torch.Tensor:
        left = x.to(torch.float64) - (x_zero.to(torch.float64) if x_zero is not None else 0)
        right = w.to(torch.float64)
        if w_zero is not None:
            right = right - broadcast(w_zero.to(torch.float64), w.shape, 0, 0)
        return self.convolution(left, right).round().to(torch.int32)


class QLinearConv(nn.Module):
    def __init__(self, convolution: nn.Module) -> None:
        super().__init__()
        self.inner = ConvInteger(convolution)

    def forward(
        self,
        x: torch.Tensor,
        x_scale: torch.Tensor,
        x_zero: torch.Tensor,
        w: torch.Tensor,
        w_scale: torch.Tensor,
        w_zero: torch.Tensor,
        y_scale: torch.Tensor,
        y_zero: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        accumulated = self.inner(x, w, x_zero, w_zero).to(torch.float64)
        if bias is not None:
            accumulated = accumulated + bias.to(torch.float64).reshape(1, -1, *([1] * (x.dim() - 2)))
        factor = x_scale.to(torch.float64) * broadcast(w_scale.to(torch.float64), torch.Size([1, w.shape[0]]), 1, 0)
        factor = factor.reshape(1, -1, *([1] * (x.dim() - 2))) if factor.dim() else factor
        value = accumulated * factor / y_scale.to(torch.float64)
        return _requantize(value, y_zero, y_zero.dtype if y_zero is not None else x.dtype)


def quantized_type(node: Any, graph: Any, elem_type: Any) -> int:
    """The ONNX type a QuantizeLinear node produces: its zero point's, else ``output_dtype``, else uint8."""
    if len(node.input_values) > 2 and node.input_values[2]:
        name = node.input_values[2]
        if name in graph.initializers:
            from onnx import helper

            return int(helper.np_dtype_to_tensor_dtype(graph.initializers[name].to_numpy().dtype))
        declared = elem_type(graph, name)
        if declared is not None:
            return int(declared)
    output = int(node.attributes.get("output_dtype", 0))
    if output:
        return output
    declared = elem_type(graph, node.output_values[0])
    return int(declared) if declared else 2


class Convolution(nn.Module):
    """A plain N-d convolution with ONNX's attributes (asymmetric pads and auto_pad resolved)."""

    def __init__(self, strides: list[int], dilations: list[int], group: int, pads: list[int], auto_pad: str) -> None:
        super().__init__()
        self.strides, self.dilations, self.group, self.pads, self.auto_pad = strides, dilations, group, pads, auto_pad

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        from graphopt.onnx.ops import _window_pads

        spatial = w.dim() - 2
        strides = self.strides or [1] * spatial
        dilations = self.dilations or [1] * spatial
        kernel = [int(k) for k in w.shape[2:]]
        pads = _window_pads([int(s) for s in x.shape[2:]], kernel, strides, dilations, self.pads, self.auto_pad)
        widths = [p for i in reversed(range(spatial)) for p in (pads[i], pads[spatial + i])]
        convolve = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[spatial - 1]
        return convolve(torch.nn.functional.pad(x, widths), w, None, strides, 0, dilations, self.group)


def register(add: Any) -> None:
    """QLinearMatMul, MatMulInteger, ConvInteger and QLinearConv (onnx2torch has none of them)."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def result(module: nn.Module, node: Any) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def convolution(node: Any) -> Convolution:
        a = node.attributes
        auto_pad = a.get("auto_pad", "NOTSET")
        return Convolution(
            [int(v) for v in a.get("strides", [])],
            [int(v) for v in a.get("dilations", [])],
            int(a.get("group", 1)),
            [int(v) for v in a.get("pads", [])],
            auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad),
        )

    add("QLinearMatMul", (10, 21), lambda node, graph: result(QLinearMatMul(), node))
    add("MatMulInteger", (10,), lambda node, graph: result(MatMulInteger(), node))
    add("ConvInteger", (10,), lambda node, graph: result(ConvInteger(convolution(node)), node))
    add("QLinearConv", (10,), lambda node, graph: result(QLinearConv(convolution(node)), node))
