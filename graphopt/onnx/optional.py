"""ONNX optionals that hold a plain tensor: OptionalGetElement and OptionalHasElement.

graphopt carries an ``optional(tensor)`` value as the tensor itself (a graph input of that type is
given as the tensor) and an absent optional as no value at all (the node's input name is empty).
So, as in ``onnx.reference.ops.op_optional_get_element``/``op_optional_has_element``: getting the
element of a present tensor is that tensor, and an optional is present exactly when its input is
named. A sequence inside an optional is not imported (graphopt has no sequences).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class GetElement(nn.Module):
    """OptionalGetElement of a tensor (or of an optional holding one): the tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class HasElement(nn.Module):
    """OptionalHasElement: a bool scalar, True when the optional input is given."""

    def __init__(self, present: bool) -> None:
        super().__init__()
        self.present = present

    def forward(self, *given: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.present)


def register(add: Callable[..., None]) -> None:
    """OptionalGetElement and OptionalHasElement at every opset that defines them (15, 18)."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    def get_element(node: Any, graph: Any) -> Any:
        mapping = OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)
        return OperationConverterResult(torch_module=GetElement(), onnx_mapping=mapping)

    def has_element(node: Any, graph: Any) -> Any:
        named = tuple(name for name in node.input_values if name)
        mapping = OnnxMapping(inputs=named, outputs=node.output_values)
        return OperationConverterResult(torch_module=HasElement(bool(named)), onnx_mapping=mapping)

    add("OptionalGetElement", (15, 18), get_element)
    add("OptionalHasElement", (15, 18), has_element)
