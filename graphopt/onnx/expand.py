"""ONNX Expand as one of graphopt's own modules, so its constant shape reaches the tracers as numbers.

onnx2torch's Expand builds ``torch.Size(shape)`` from a tensor; where the shape is a constant that
``bind_constant_operands`` binds, ``torch.export`` still sees that tensor as a fake one in some graphs
(the zero initial states ``torch.onnx.export`` writes for an ``nn.LSTM``: ``Expand(0, Concat(...))``),
and the export fails. graphopt's converter modules get their constant shape operands as numpy arrays
(``constants.host_shape_operands``), which every tracer reads as plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class Expand(nn.Module):
    """ONNX Expand: ``input`` broadcast with ``shape`` both ways (numpy's rule), as onnx2torch's does."""

    def forward(self, input: torch.Tensor, shape: Any) -> torch.Tensor:
        sizes = [int(v) for v in shape.reshape(-1).tolist()]
        return input * torch.ones(sizes, dtype=input.dtype, device=input.device)


def register(replace: Callable[..., None]) -> None:
    """Register Expand (every version since 8) over onnx2torch's, through ``replace(op, versions, converter)``."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def convert(node: Any, graph: Any) -> Any:
        return OperationConverterResult(torch_module=Expand(), onnx_mapping=onnx_mapping_from_node(node))

    replace("Expand", (8,), convert)
