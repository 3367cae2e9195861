"""ONNX NonMaxSuppression in plain PyTorch, so it imports without torchvision.

onnx2torch's converter calls ``torchvision.ops.nms``, and PyPI's torchvision does not load beside the
pinned CPU torch (``graphopt.onnx.io``), so every detection model's NMS was "needs torchvision". This
module follows the onnx reference implementation step by step: per batch and class, the boxes scoring
above ``score_threshold`` (when given) in descending score order (ties: the lower box index first),
each kept unless its IoU with a box already kept exceeds ``iou_threshold``, at most
``max_output_boxes_per_class`` (default 0: none) per class. ``center_point_box`` 0 reads boxes as two
corners in either order, 1 as (x centre, y centre, width, height).

The number of boxes kept depends on the values, so a compiled target runs it with ``fallback="torch"``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _extents(boxes: torch.Tensor, center_point_box: int) -> tuple[torch.Tensor, ...]:
    """(x_min, x_max, y_min, y_max) of every box of one batch ([boxes, 4])."""
    if center_point_box:
        half_width, half_height = boxes[:, 2] / 2, boxes[:, 3] / 2
        return boxes[:, 0] - half_width, boxes[:, 0] + half_width, boxes[:, 1] - half_height, boxes[:, 1] + half_height
    x_min, x_max = torch.minimum(boxes[:, 1], boxes[:, 3]), torch.maximum(boxes[:, 1], boxes[:, 3])
    y_min, y_max = torch.minimum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 0], boxes[:, 2])
    return x_min, x_max, y_min, y_max


def _suppressed(extents: tuple[torch.Tensor, ...], box: int, kept: list[int], threshold: torch.Tensor) -> bool:
    """Whether ``box`` overlaps a kept box by more than ``threshold`` IoU (the reference's arithmetic)."""
    x_min, x_max, y_min, y_max = extents
    others = torch.tensor(kept, dtype=torch.int64)
    left, right = torch.maximum(x_min[box], x_min[others]), torch.minimum(x_max[box], x_max[others])
    bottom, top = torch.maximum(y_min[box], y_min[others]), torch.minimum(y_max[box], y_max[others])
    intersection = (right - left) * (top - bottom)
    area = (x_max[box] - x_min[box]) * (y_max[box] - y_min[box])
    areas = (x_max[others] - x_min[others]) * (y_max[others] - y_min[others])
    union = area + areas - intersection
    overlapping = (right > left) & (top > bottom) & (intersection > 0) & (area > 0) & (areas > 0) & (union > 0)
    return bool((overlapping & (intersection / union > threshold)).any())


class NonMaxSuppression(nn.Module):
    """ONNX NonMaxSuppression (10, 11): selected (batch, class, box) indices, int64 [selected, 3]."""

    def __init__(self, center_point_box: int) -> None:
        super().__init__()
        self.center_point_box = center_point_box

    def forward(
        self,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        max_output_boxes_per_class: torch.Tensor | None = None,
        iou_threshold: torch.Tensor | None = None,
        score_threshold: torch.Tensor | None = None,
    ) -> torch.Tensor:
        def first(value: torch.Tensor | None) -> Any:
            return value.reshape(-1)[0] if value is not None and value.numel() else None

        limit = max(int(first(max_output_boxes_per_class) or 0), 0)
        given_iou = first(iou_threshold)
        threshold = given_iou.to(boxes.dtype) if given_iou is not None else torch.zeros((), dtype=boxes.dtype)
        floor = first(score_threshold)
        selected: list[tuple[int, int, int]] = []
        for batch in range(boxes.shape[0]):
            extents = _extents(boxes[batch], self.center_point_box)
            for klass in range(scores.shape[1]):
                row = scores[batch, klass]
                order = torch.sort(row, descending=True, stable=True).indices.tolist()
                if floor is not None:
                    order = [i for i in order if bool(row[i] > floor.to(row.dtype))]
                kept: list[int] = []
                for box in order:
                    if len(kept) >= limit:
                        break
                    if not kept or not _suppressed(extents, box, kept, threshold):
                        kept.append(box)
                        selected.append((batch, klass, box))
        return torch.tensor(selected, dtype=torch.int64).reshape(-1, 3)


def register(replace: Any) -> None:
    """Register the converter (over onnx2torch's torchvision one) through ``replace(op, versions, converter)``."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def convert(node: Any, graph: Any) -> Any:
        module = NonMaxSuppression(int(node.attributes.get("center_point_box", 0)))
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    replace("NonMaxSuppression", (10,), convert)
