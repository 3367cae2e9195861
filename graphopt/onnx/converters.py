"""Converters graphopt adds to onnx2torch for ONNX ops (or op versions) it lacks, where they are a few lines.

Each is registered with onnx2torch's own ``add_converter`` (the library's extension point) by
``register()``, which ``graphopt.onnx.io`` calls once before its first conversion. Each module is
plain PyTorch, so the converted model is captured, optimized and lowered like any other:

- the Reduce ops of opset 18 (and 20 for Max/Min), whose ``axes`` moved from an attribute to an
  input: constant axes only, as onnx2torch's own ReduceSum-13;
- CastLike (15+), Size (1+), Gelu (20), Trilu (14), RMSNormalization (23), NegativeLogLikelihoodLoss and
  SoftmaxCrossEntropyLoss (12+): not in onnx2torch 1.5; LayerNormalization's optional Mean and
  InvStdDev outputs (onnx2torch returns only Y);
- QuantizeLinear / DequantizeLinear with constant scales (ONNX Runtime's QDQ format) as graphopt's
  own quantize / dequantize / dequantize_per_channel ops, and DynamicQuantizeLinear; onnx2torch has
  none of them;
- Conv whose weight is not an initializer (a DequantizeLinear output in a QDQ model, or a graph
  input) as ``torch.nn.functional.conv{1,2,3}d``: onnx2torch's Conv needs the weight as a constant;
- Reshape to a constant shape (what every exporter writes) as a plain ``reshape`` with that shape:
  onnx2torch's Reshape reads the shape tensor at run time, which ``torch.export`` (and so every
  graphopt target) cannot trace.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

import graphopt.qdq_ops  # noqa: F401  (defines torch.ops.graphopt.*)

_REDUCE_18 = {
    "ReduceL1": (18,),
    "ReduceL2": (18,),
    "ReduceLogSum": (18,),
    "ReduceLogSumExp": (18,),
    "ReduceMax": (18, 20),
    "ReduceMean": (18,),
    "ReduceMin": (18, 20),
    "ReduceProd": (18,),
    "ReduceSumSquare": (18,),
}

_registered = False


class CastLike(nn.Module):
    """ONNX CastLike: ``input`` in the dtype of ``target_type``."""

    def forward(self, input: torch.Tensor, target_type: torch.Tensor) -> torch.Tensor:
        return input.to(target_type.dtype)


class Size(nn.Module):
    """ONNX Size: the element count as an int64 scalar (a sum of ones, so fx can trace it)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(input, dtype=torch.int64).sum()


class Trilu(nn.Module):
    """ONNX Trilu: ``torch.triu`` / ``torch.tril``; ``k`` a constant, or read from the input when None."""

    def __init__(self, upper: bool, k: int | None) -> None:
        super().__init__()
        self.upper = upper
        self.k = k

    def forward(self, input: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        diagonal = self.k if self.k is not None else (int(k.reshape(-1)[0]) if k is not None else 0)
        return torch.triu(input, diagonal) if self.upper else torch.tril(input, diagonal)


class QuantizeLinear(nn.Module):
    """Per-tensor ONNX QuantizeLinear: ``graphopt::quantize`` (round half to even, saturate)."""

    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int) -> None:
        super().__init__()
        self.scale, self.zero_point, self.qmin, self.qmax = scale, zero_point, qmin, qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.graphopt.quantize.default(x.float(), self.scale, self.zero_point, self.qmin, self.qmax)


class DequantizeLinear(nn.Module):
    """Per-tensor ONNX DequantizeLinear with constant scale and zero point: ``graphopt::dequantize``."""

    def __init__(self, scale: float, zero_point: int) -> None:
        super().__init__()
        self.scale, self.zero_point = scale, zero_point

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return torch.ops.graphopt.dequantize.default(q, self.scale, self.zero_point)


class DequantizePerChannel(nn.Module):
    """ONNX DequantizeLinear with one scale per channel along ``axis`` and zero points of 0.

    A constant int8 tensor (a weight) is held as a frozen parameter, not a buffer: fx traces
    parameters as graph inputs but evaluates buffers at trace time, which would bake the weight
    into float and lose the int8 form the targets' integer kernels match."""

    def __init__(self, scales: torch.Tensor, axis: int, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.scales = nn.Parameter(scales.float(), requires_grad=False)
        self.weight = nn.Parameter(weight, requires_grad=False) if weight is not None else None
        self.axis = axis

    def forward(self, q: torch.Tensor | None = None) -> torch.Tensor:
        q = self.weight if q is None else q
        assert q is not None
        return torch.ops.graphopt.dequantize_per_channel.default(q, self.scales, self.axis % q.dim())


class DynamicQuantizeLinear(nn.Module):
    """ONNX DynamicQuantizeLinear: uint8 over ``[min(x, 0), max(x, 0)]``; returns (y, scale, zero point)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from graphopt.qdq_ops import dynamic_qparams

        scale, zero_point = dynamic_qparams(x, 0, 255)
        q = torch.clamp(torch.round(x / scale) + zero_point, 0, 255).to(torch.uint8)
        return q, scale, zero_point.to(torch.uint8)


class Normalization(nn.Module):
    """ONNX LayerNormalization (with its Mean and InvStdDev outputs) and RMSNormalization over the
    dimensions from ``axis`` on, computed in float32 (``stash_type`` 1)."""

    def __init__(self, axis: int, epsilon: float, rms: bool, outputs: int) -> None:
        super().__init__()
        self.axis, self.epsilon, self.rms, self.outputs = axis, epsilon, rms, outputs

    def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None) -> Any:
        dims = tuple(range(self.axis % x.dim(), x.dim()))
        value = x.float()
        mean = value.mean(dim=dims, keepdim=True)
        centered = value if self.rms else value - mean
        inv_std = torch.rsqrt(centered.square().mean(dim=dims, keepdim=True) + self.epsilon)
        y = (centered * inv_std).to(x.dtype) * scale
        if bias is not None:
            y = y + bias
        if self.outputs == 1:
            return y
        return (y, mean, inv_std)[: self.outputs]


class Loss(nn.Module):
    """ONNX NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: ``torch.nn.functional.nll_loss`` on
    (log-softmaxed) scores; SoftmaxCrossEntropyLoss's optional second output is the log-probabilities."""

    def __init__(self, softmax: bool, reduction: str, ignore_index: int | None, outputs: int) -> None:
        super().__init__()
        self.softmax, self.reduction, self.outputs = softmax, reduction, outputs
        self.ignore_index = -100 if ignore_index is None else ignore_index

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> Any:
        log_prob = torch.log_softmax(scores, dim=1) if self.softmax else scores
        loss = torch.nn.functional.nll_loss(
            log_prob, labels.long(), weight=weights, ignore_index=self.ignore_index, reduction=self.reduction
        )
        return (loss, log_prob) if self.outputs > 1 else loss


class FunctionalConv(nn.Module):
    """ONNX Conv on a run-time weight: ``F.conv{1,2,3}d`` (asymmetric or ``auto_pad`` padding first, by ``F.pad``)."""

    def __init__(
        self,
        strides: list[int],
        dilations: list[int],
        group: int,
        pads: list[int],
        auto_pad: str,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        self.strides, self.dilations, self.group, self.pads, self.auto_pad = strides, dilations, group, pads, auto_pad
        self.rank = rank  # the weight's rank where the model declares it: symbolic_trace cannot read weight.dim()

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        spatial = (self.rank if self.rank is not None else weight.dim()) - 2
        strides = self.strides or [1] * spatial
        dilations = self.dilations or [1] * spatial
        pads = self.pads or [0] * (2 * spatial)
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * (2 * spatial)
            for i in range(spatial):
                size, kernel = int(x.shape[2 + i]), (int(weight.shape[2 + i]) - 1) * dilations[i] + 1
                total = max((-(-size // strides[i]) - 1) * strides[i] + kernel - size, 0)
                small, large = total // 2, total - total // 2
                pads[i], pads[spatial + i] = (small, large) if self.auto_pad == "SAME_UPPER" else (large, small)
        elif self.auto_pad == "VALID":
            pads = [0] * (2 * spatial)
        begin, end = pads[:spatial], pads[spatial:]
        padding: list[int] | int = begin
        if begin != end:
            x = torch.nn.functional.pad(x, [p for i in reversed(range(spatial)) for p in (begin[i], end[i])])
            padding = 0
        conv = (torch.nn.functional.conv1d, torch.nn.functional.conv2d, torch.nn.functional.conv3d)[spatial - 1]
        return conv(x, weight, bias, strides, padding, dilations, self.group)


class StaticReshape(nn.Module):
    """ONNX Reshape to a constant shape (``0`` copies the input's dimension unless ``allowzero``,
    ``-1`` is inferred)."""

    def __init__(self, shape: list[int], allowzero: bool = False) -> None:
        super().__init__()
        self.shape, self.allowzero = shape, allowzero

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.allowzero:
            return input.reshape(self.shape)
        return input.reshape([input.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])


class RuntimeReshape(nn.Module):
    """ONNX Reshape with ``allowzero=1`` to a shape computed at run time (a 0 is a dimension of 0)."""

    def forward(self, input: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return input.reshape([int(d) for d in shape.reshape(-1).tolist()])


class Reduce(nn.Module):
    """An ONNX-18 Reduce op whose ``axes`` is a run-time input (eager only: fx keeps it as one module)."""

    def __init__(self, operation_type: str, keepdims: int, noop_with_empty_axes: bool) -> None:
        super().__init__()
        self.operation_type = operation_type
        self.keepdims = keepdims
        self.noop = noop_with_empty_axes

    def forward(self, input: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes

        values = [int(a) for a in axes.reshape(-1).tolist()] if axes is not None else []
        if not values and self.noop:
            return input
        values = sorted(a % input.dim() for a in values) if input.dim() else values
        dims = values or list(range(input.dim()))
        if self.operation_type in ("ReduceMax", "ReduceMin") and any(input.shape[d] == 0 for d in dims):
            return EmptyExtremum(self.operation_type == "ReduceMax", values or None, bool(self.keepdims))(input)
        return OnnxReduceStaticAxes(self.operation_type, values or None, self.keepdims)(input)


class EmptyExtremum(nn.Module):
    """ONNX ReduceMax / ReduceMin over a dimension of size 0: the reduction's identity (-inf / +inf, an
    integer type's min / max, False / True), which ONNX defines and ``torch.amax`` refuses."""

    def __init__(self, maximum: bool, axes: list[int] | None, keepdims: bool) -> None:
        super().__init__()
        self.maximum, self.axes, self.keepdims = maximum, axes, keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = {a % x.dim() for a in self.axes} if self.axes else set(range(x.dim()))
        shape = [1 if i in dims else s for i, s in enumerate(x.shape) if self.keepdims or i not in dims]
        fill: float | bool
        if x.dtype == torch.bool:
            fill = not self.maximum
        elif x.is_floating_point():
            fill = -math.inf if self.maximum else math.inf
        else:
            fill = torch.iinfo(x.dtype).min if self.maximum else torch.iinfo(x.dtype).max
        return torch.full(shape, fill, dtype=x.dtype)


def _declared_shape(graph: Any, name: str) -> list[int | None] | None:
    """The static dimensions the model declares for a value (None for a symbolic one), or None."""
    info = graph.value_info.get(name)
    if info is None or not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]


def _constant(name: str, graph: Any) -> Any:
    """The constant value (initializer or Constant node) of an input, or raise NotImplementedError."""
    from onnx2torch.utils.common import get_const_value

    try:
        value = get_const_value(name, graph)
    except KeyError:
        raise NotImplementedError(f"input '{name}' must be a constant") from None
    # a Constant node's value_ints / value_float ... attribute comes back as a list or number
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def _is_constant(name: str, graph: Any) -> bool:
    from onnx2torch.utils.common import get_const_value

    try:
        get_const_value(name, graph)
    except KeyError:
        return False
    return True


def register() -> None:
    """Register the converters with onnx2torch (idempotent)."""
    global _registered
    if _registered:
        return
    _registered = True
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node

    def add(op: str, versions: tuple[int, ...], converter: Any) -> None:
        for version in versions:
            if OperationDescription("", op, version) not in _CONVERTER_REGISTRY:
                add_converter(operation_type=op, version=version)(converter)

    def replace(op: str, versions: tuple[int, ...], converter: Any) -> None:
        """``converter`` for every version of ``op`` from ``min(versions)`` on, over onnx2torch's own."""
        for version in since_versions(op, min(versions)):
            _CONVERTER_REGISTRY[OperationDescription("", op, version)] = converter

    def reduce(node: Any, graph: Any) -> Any:
        keepdims = int(node.attributes.get("keepdims", 1))
        noop = bool(node.attributes.get("noop_with_empty_axes", 0))
        has_axes = len(node.input_values) > 1 and bool(node.input_values[1])
        if (
            has_axes
            and node.input_values[1] not in graph.initializers
            and not _is_constant(node.input_values[1], graph)
        ):
            module: nn.Module = Reduce(node.operation_type, keepdims, noop)
            return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))
        axes = [int(a) for a in _constant(node.input_values[1], graph).reshape(-1).tolist()] if has_axes else None
        shape = _declared_shape(graph, node.input_values[0])
        reduced = [shape[a % len(shape)] for a in axes] if shape and axes else (shape or [])
        if node.operation_type in ("ReduceMax", "ReduceMin") and 0 in reduced and not (not axes and noop):
            module = EmptyExtremum(node.operation_type == "ReduceMax", axes, bool(keepdims))
        elif not axes and noop:
            module = nn.Identity()
        else:
            module = OnnxReduceStaticAxes(operation_type=node.operation_type, axes=axes or None, keepdims=keepdims)
        mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
        return OperationConverterResult(torch_module=module, onnx_mapping=mapping)

    for op, versions in _REDUCE_18.items():
        add(op, versions, reduce)

    def cast_like(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=CastLike(), onnx_mapping=onnx_mapping_from_node(node))

    add("CastLike", (15, 19, 21, 23, 24, 25), cast_like)

    def size(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=Size(), onnx_mapping=onnx_mapping_from_node(node))

    add("Size", (1, 13, 19, 21, 23, 24, 25), size)

    def gelu(node: Any, graph: Any) -> Any:
        approximate = node.attributes.get("approximate", "none")
        approximate = approximate.decode() if isinstance(approximate, bytes) else str(approximate)
        return OperationConverterResult(
            torch_module=nn.GELU(approximate=approximate), onnx_mapping=onnx_mapping_from_node(node)
        )

    add("Gelu", (20,), gelu)

    def trilu(node: Any, graph: Any) -> Any:
        upper = bool(node.attributes.get("upper", 1))
        if len(node.input_values) > 1 and node.input_values[1]:
            if not _is_constant(node.input_values[1], graph):
                return OperationConverterResult(
                    torch_module=Trilu(upper, None), onnx_mapping=onnx_mapping_from_node(node)
                )
            k = int(_constant(node.input_values[1], graph).reshape(-1)[0])
        else:
            k = 0
        mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
        return OperationConverterResult(torch_module=Trilu(upper, k), onnx_mapping=mapping)

    add("Trilu", (14,), trilu)

    from graphopt.onnx import quant as onnx_quant
    from graphopt.onnx.ops import ONNX_DTYPES, _elem_type

    def attribute(node: Any, name: str, default: int) -> int:
        return int(node.attributes.get(name, default))

    def general_quantize(node: Any, graph: Any) -> Any:
        module = onnx_quant.Quantize(
            onnx_quant.quantized_type(node, graph, _elem_type),
            attribute(node, "axis", 1),
            attribute(node, "block_size", 0),
            bool(attribute(node, "saturate", 1)),
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def general_dequantize(node: Any, graph: Any) -> Any:
        x_type = _elem_type(graph, node.input_values[0])
        if node.input_values[0] in graph.initializers:
            from onnx import helper

            x_type = int(helper.np_dtype_to_tensor_dtype(graph.initializers[node.input_values[0]].to_numpy().dtype))
        output = attribute(node, "output_dtype", 0)
        module = onnx_quant.Dequantize(
            attribute(node, "axis", 1),
            attribute(node, "block_size", 0),
            ONNX_DTYPES.get(output) if output else None,
            x_type not in (17, 18, 19, 20, 23),  # float8 and float4 inputs ignore the zero point
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def quantize_linear(node: Any, graph: Any) -> Any:
        """graphopt's int8 quantize op where it fits (constant per-tensor int8/uint8), else the general one."""
        try:
            return int8_quantize_linear(node, graph)
        except NotImplementedError:
            return general_quantize(node, graph)

    def int8_quantize_linear(node: Any, graph: Any) -> Any:
        if any(node.attributes.get(name) for name in ("block_size", "output_dtype")) or not all(
            _is_constant(name, graph) for name in node.input_values[1:] if name
        ):
            raise NotImplementedError("only per-tensor QuantizeLinear with constant scale and zero point")
        scale = _constant(node.input_values[1], graph)
        zero = _constant(node.input_values[2], graph) if len(node.input_values) > 2 and node.input_values[2] else None
        if scale.numel() != 1:
            raise NotImplementedError("per-axis QuantizeLinear")
        if zero is not None and zero.dtype not in (torch.int8, torch.uint8):
            raise NotImplementedError(f"QuantizeLinear to {zero.dtype}")
        signed = zero is not None and zero.dtype == torch.int8
        module = QuantizeLinear(
            float(scale.reshape(-1)[0]),
            int(zero.reshape(-1)[0]) if zero is not None else 0,
            -128 if signed else 0,
            127 if signed else 255,
        )
        mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
        return OperationConverterResult(torch_module=module, onnx_mapping=mapping)

    def dequantize_linear(node: Any, graph: Any) -> Any:
        """graphopt's int8 dequantize ops where they fit (constant scales, int8/uint8/int32 input), else
        the general one (run-time scales, blocked, other input types, ``output_dtype``)."""
        names = [name for name in node.input_values[1:] if name]
        x_type = _elem_type(graph, node.input_values[0])
        if node.input_values[0] in graph.initializers:
            x_type = {torch.int8: 3, torch.uint8: 2, torch.int32: 6}.get(
                graph.initializers[node.input_values[0]].to_torch().dtype
            )
        if (
            node.attributes.get("block_size")
            or node.attributes.get("output_dtype")
            or (x_type is not None and x_type not in (2, 3, 6))
            or not all(_is_constant(name, graph) for name in names)
        ):
            return general_dequantize(node, graph)
        try:
            return int8_dequantize_linear(node, graph, names)
        except NotImplementedError:
            return general_dequantize(node, graph)

    def int8_dequantize_linear(node: Any, graph: Any, names: list[str]) -> Any:
        scale = _constant(node.input_values[1], graph)
        zero = _constant(node.input_values[2], graph) if len(names) > 1 else None
        mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
        constant_input = node.input_values[0] in graph.initializers
        if scale.numel() == 1 and constant_input and (zero is None or not bool((zero != 0).any())):
            # a symmetric per-tensor weight: the per-channel form with one repeated scale, exactly
            weight = graph.initializers[node.input_values[0]].to_torch()
            if weight.dim() > 0:
                scales = torch.full((weight.shape[0],), float(scale.reshape(-1)[0]))
                module = DequantizePerChannel(scales, 0, weight)
                return OperationConverterResult(
                    torch_module=module, onnx_mapping=OnnxMapping(inputs=(), outputs=node.output_values)
                )
        if scale.numel() == 1:
            zero_point = int(zero.reshape(-1)[0]) if zero is not None else 0
            return OperationConverterResult(
                torch_module=DequantizeLinear(float(scale.reshape(-1)[0]), zero_point), onnx_mapping=mapping
            )
        if zero is not None and bool((zero != 0).any()):
            raise NotImplementedError("per-axis DequantizeLinear with non-zero zero points")
        axis = int(node.attributes.get("axis", 1))
        if node.input_values[0] in graph.initializers:
            weight = graph.initializers[node.input_values[0]].to_torch()
            module = DequantizePerChannel(scale.reshape(-1), axis, weight)
            mapping = OnnxMapping(inputs=(), outputs=node.output_values)
        else:
            module = DequantizePerChannel(scale.reshape(-1), axis)
        return OperationConverterResult(torch_module=module, onnx_mapping=mapping)

    def dynamic_quantize_linear(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=DynamicQuantizeLinear(), onnx_mapping=onnx_mapping_from_node(node))

    add("QuantizeLinear", (10, 13, 19, 21, 23, 24, 25), quantize_linear)
    add("DequantizeLinear", (10, 13, 19, 21, 23, 24, 25), dequantize_linear)
    add("DynamicQuantizeLinear", (11,), dynamic_quantize_linear)
    onnx_quant.register(add)

    def outputs(node: Any) -> int:
        return len([name for name in node.output_values if name])

    def rms_norm(node: Any, graph: Any) -> Any:
        module = Normalization(
            int(node.attributes.get("axis", -1)), float(node.attributes.get("epsilon", 1e-5)), True, 1
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    add("RMSNormalization", (23,), rms_norm)

    def loss(node: Any, graph: Any) -> Any:
        reduction = node.attributes.get("reduction", "mean")
        reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
        ignore = node.attributes.get("ignore_index")
        module = Loss(
            node.operation_type == "SoftmaxCrossEntropyLoss",
            reduction,
            None if ignore is None else int(ignore),
            outputs(node),
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    add("NegativeLogLikelihoodLoss", (12, 13, 22), loss)
    add("SoftmaxCrossEntropyLoss", (12, 13), loss)

    general_layer_norm = _CONVERTER_REGISTRY[OperationDescription("", "LayerNormalization", 17)]

    def layer_norm(node: Any, graph: Any) -> Any:
        if outputs(node) == 1:
            return general_layer_norm(node, graph)
        module = Normalization(
            int(node.attributes.get("axis", -1)), float(node.attributes.get("epsilon", 1e-5)), False, outputs(node)
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    _CONVERTER_REGISTRY[OperationDescription("", "LayerNormalization", 17)] = layer_norm

    for version in (1, 11):
        general_conv = _CONVERTER_REGISTRY[OperationDescription("", "Conv", version)]
        _CONVERTER_REGISTRY[OperationDescription("", "Conv", version)] = _functional_conv(general_conv)

    for version in (5, 13, 14):
        general = _CONVERTER_REGISTRY[OperationDescription("", "Reshape", version)]
        _CONVERTER_REGISTRY[OperationDescription("", "Reshape", version)] = _static_reshape(general)

    from graphopt.onnx import extra as onnx_extra
    from graphopt.onnx import nms as onnx_nms
    from graphopt.onnx import ops as onnx_ops
    from graphopt.onnx import optional as onnx_optional
    from graphopt.onnx import resize as onnx_resize

    def add_since(op: str, versions: tuple[int, ...], converter: Any) -> None:
        add(op, since_versions(op, min(versions)), converter)

    onnx_ops.register(add_since, replace)
    onnx_resize.register(add_since, replace)
    onnx_extra.register(add_since, replace)
    onnx_nms.register(replace)
    onnx_optional.register(add_since)
    from graphopt.onnx.constants import register_host_operands, register_static_axes

    register_host_operands(_CONVERTER_REGISTRY)
    register_static_axes(_CONVERTER_REGISTRY, since_versions)


def since_versions(op: str, first: int) -> tuple[int, ...]:
    """The opset versions from ``first`` on at which the default-domain ``op`` changed (its schemas' since_version)."""
    import onnx

    found = set()
    for opset in range(first, onnx.defs.onnx_opset_version() + 1):
        try:
            found.add(int(onnx.defs.get_schema(op, opset).since_version))
        except Exception:
            continue
    return tuple(sorted(v for v in found if v >= first))


def _declared_rank(graph: Any, name: str) -> int | None:
    """The rank of a value whose shape the graph declares (inputs, outputs, value_info), else None."""
    info = graph._value_info.get(name)
    if info is None or not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
        return None
    return len(info.type.tensor_type.shape.dim)


def _functional_conv(general: Any) -> Any:
    """A Conv converter that keeps onnx2torch's (an ``nn.Conv``) for a constant weight, else ``FunctionalConv``."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def convert(node: Any, graph: Any) -> Any:
        if node.input_values[1] in graph.initializers:
            return general(node, graph)
        auto_pad = node.attributes.get("auto_pad", "NOTSET")
        module = FunctionalConv(
            list(node.attributes.get("strides", [])),
            list(node.attributes.get("dilations", [])),
            int(node.attributes.get("group", 1)),
            list(node.attributes.get("pads", [])),
            auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad),
            _declared_rank(graph, node.input_values[1]),
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    return convert


def _static_reshape(general: Any) -> Any:
    """A Reshape converter that emits ``StaticReshape`` for a constant shape, else defers to onnx2torch's."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node

    def convert(node: Any, graph: Any) -> Any:
        allowzero = bool(node.attributes.get("allowzero", 0))
        if not _is_constant(node.input_values[1], graph):
            if allowzero:
                return OperationConverterResult(
                    torch_module=RuntimeReshape(), onnx_mapping=onnx_mapping_from_node(node)
                )
            return general(node, graph)
        shape = [int(d) for d in _constant(node.input_values[1], graph).reshape(-1).tolist()]
        mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
        return OperationConverterResult(torch_module=StaticReshape(shape, allowzero), onnx_mapping=mapping)

    return convert
