"""ONNX Expand and ConstantOfShape as graphopt's own modules, so a constant shape reaches the tracers as numbers.

onnx2torch's modules build ``torch.Size(shape)`` from a tensor; where the shape is a constant that
``bind_constant_operands`` binds, ``torch.export`` still sees that tensor as a fake one in some graphs
(the zero initial states ``torch.onnx.export`` writes for an ``nn.LSTM``: ``Expand(0, Concat(...))``;
AffineGrid's function body once its If is inlined: ``ConstantOfShape(Shape(...))``), and the export
fails. graphopt's converter modules get their constant shape operands as numpy arrays
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

    replace("Expand", (8,), expand)
    replace("ConstantOfShape", (9,), constant_of_shape)
