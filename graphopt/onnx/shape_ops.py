"""ONNX Expand, ConstantOfShape and Slice as graphopt's own modules, so a constant shape reaches the tracers as numbers.

onnx2torch's modules build ``torch.Size(shape)`` from a tensor; where the shape is a constant that
``bind_constant_operands`` binds, ``torch.export`` still sees that tensor as a fake one in some graphs
(the zero initial states ``torch.onnx.export`` writes for an ``nn.LSTM``: ``Expand(0, Concat(...))``;
AffineGrid's function body once its If is inlined: ``ConstantOfShape(Shape(...))``), and the export
fails. onnx2torch's Slice reads its bound ``axes`` and ``steps`` with ``.numpy()``, which a fake tensor
refuses: a graph ``symbolic_trace`` cannot follow (an onnx2torch Gather on a graph input) and that
slices by constants (NegativeLogLikelihoodLoss's and RotaryEmbedding's function bodies) could not be
exported at all. graphopt's converter modules get their constant shape operands as numpy arrays
(``constants.host_shape_operands``), which every tracer reads as plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _sizes(shape: Any) -> list[int]:
    return [int(v) for v in shape.reshape(-1).tolist()]


class Expand(nn.Module):
    """ONNX Expand: ``input`` broadcast with ``shape`` both ways (numpy's rule), as onnx2torch's does."""

    def forward(self, input: torch.Tensor, shape: Any) -> torch.Tensor:
        return input * torch.ones(_sizes(shape), dtype=input.dtype, device=input.device)


class ConstantOfShape(nn.Module):
    """ONNX ConstantOfShape: a tensor of ``shape`` filled with the attribute's one value (float 0 by default)."""

    def __init__(self, value: float | int | bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.value, self.dtype = value, dtype

    def forward(self, shape: Any) -> torch.Tensor:
        return torch.full(_sizes(shape), self.value, dtype=self.dtype)


class Slice(nn.Module):
    """ONNX Slice (10+): every axis sliced by Python's rule, which is ONNX's clamping; a negative step as
    a flip and a positive step (index ``i`` is ``-i - 1`` of the flipped axis). A negative axis is
    indexed after an ``Ellipsis``, so no tracer needs the input's rank."""

    def forward(self, input: torch.Tensor, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> torch.Tensor:
        begin, end = _sizes(starts), _sizes(ends)
        dims = _sizes(axes) if axes is not None else list(range(len(begin)))
        strides = _sizes(steps) if steps is not None else [1] * len(begin)
        flips = [axis for axis, step in zip(dims, strides, strict=True) if step < 0]
        value = torch.flip(input, dims=flips) if flips else input
        cuts: dict[int, slice] = {
            axis: slice(first, last, step) if step > 0 else slice(-first - 1, -last - 1, -step)
            for first, last, axis, step in zip(begin, end, dims, strides, strict=True)
        }
        leading = [cuts.get(axis, slice(None)) for axis in range(max([*dims, -1]) + 1)]
        trailing: list[Any] = [cuts.get(axis, slice(None)) for axis in range(min([*dims, 0]), 0)]
        if leading:
            value = value[tuple(leading)]
        if trailing:
            value = value[(Ellipsis, *trailing)]
        return value


def register(replace: Callable[..., None]) -> None:
    """Register both over onnx2torch's (every version since 8 and 9) through ``replace(op, versions, converter)``."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def expand(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=Expand(), onnx_mapping=onnx_mapping_from_node(node))

    def constant_of_shape(node: Any, graph: Any) -> Any:
        given = node.attributes.get("value")
        value = given.to_torch().reshape(-1) if given is not None else torch.zeros(1)
        module = ConstantOfShape(value[0].item(), value.dtype)
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def slice_(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=Slice(), onnx_mapping=onnx_mapping_from_node(node))

    replace("Expand", (8,), expand)
    replace("Slice", (10,), slice_)
    replace("ConstantOfShape", (9,), constant_of_shape)
