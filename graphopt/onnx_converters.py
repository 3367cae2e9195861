"""Converters graphopt adds to onnx2torch for ONNX ops (or op versions) it lacks, where they are a few lines.

Each is registered with onnx2torch's own ``add_converter`` (the library's extension point) by
``register()``, which ``graphopt.onnx_io`` calls once before its first conversion. Each module is
plain PyTorch, so the converted model is captured, optimized and lowered like any other:

- the Reduce ops of opset 18 (and 20 for Max/Min), whose ``axes`` moved from an attribute to an
  input: constant axes only, as onnx2torch's own ReduceSum-13;
- CastLike (15+), Size (1+), Gelu (20), Trilu (14): not in onnx2torch 1.5;
- Reshape to a constant shape (what every exporter writes) as a plain ``reshape`` with that shape:
  onnx2torch's Reshape reads the shape tensor at run time, which ``torch.export`` (and so every
  graphopt target) cannot trace.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

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


class StaticReshape(nn.Module):
    """ONNX Reshape to a constant shape (``0`` copies the input's dimension, ``-1`` is inferred)."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return input.reshape([input.shape[i] if d == 0 else d for i, d in enumerate(self.shape)])


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
        return OnnxReduceStaticAxes(self.operation_type, values or None, self.keepdims)(input)


def _constant(name: str, graph: Any) -> Any:
    """The constant value (initializer or Constant node) of an input, or raise NotImplementedError."""
    from onnx2torch.utils.common import get_const_value

    try:
        return get_const_value(name, graph)
    except KeyError:
        raise NotImplementedError(f"input '{name}' must be a constant") from None


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
        if not axes and noop:
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

    for version in (5, 13, 14):
        general = _CONVERTER_REGISTRY[OperationDescription("", "Reshape", version)]
        _CONVERTER_REGISTRY[OperationDescription("", "Reshape", version)] = _static_reshape(general)


def _static_reshape(general: Any) -> Any:
    """A Reshape converter that emits ``StaticReshape`` for a constant shape, else defers to onnx2torch's."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    def convert(node: Any, graph: Any) -> Any:
        if node.attributes.get("allowzero", 0) or not _is_constant(node.input_values[1], graph):
            return general(node, graph)
        shape = [int(d) for d in _constant(node.input_values[1], graph).reshape(-1).tolist()]
        mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
        return OperationConverterResult(torch_module=StaticReshape(shape), onnx_mapping=mapping)

    return convert
