"""A tiny single-stage detector: conv backbone -> box and score head -> NMS-like selection.

The selection is what detection models end with and what one static TVM graph cannot express:
sort the boxes by score, suppress every box that overlaps a higher-scoring one by more than an
IoU threshold ("fast NMS", as in YOLACT: one IoU matrix instead of torchvision's sequential loop),
then keep what survives with a boolean mask, ``nonzero`` and ``index_select``. How many boxes come
out depends on the input's values, so ``graphopt compile --fallback torch`` runs that part in
PyTorch between the compiled segments.

>>> model = tiny_detector()
>>> boxes, scores = model(torch.randn(1, 3, 32, 32))
>>> boxes.shape[1], scores.dim()  # (kept, 4), (kept,)
(4, 1)
"""

from __future__ import annotations

import torch
from torch import nn


def box_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(N, 4)`` boxes written ``(x1, y1, x2, y2)``: an ``(N, N)`` matrix."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices (into the score-sorted order) of the boxes no higher-scoring box overlaps by more than
    ``iou_threshold``; a data-dependent count."""
    iou = box_iou(boxes).triu(diagonal=1)  # iou[i, j]: box i scores higher than box j
    worst_overlap = iou.max(dim=0).values
    return (worst_overlap <= iou_threshold).nonzero().squeeze(1)


class TinyDetector(nn.Module):
    """Input ``(1, 3, H, W)`` float32; output the kept boxes ``(K, 4)`` and their scores ``(K,)``, by
    descending score. Each cell of the ``H/4 x W/4`` feature map predicts one box."""

    def __init__(self, width: int = 16, iou_threshold: float = 0.4, score_threshold: float = 0.4) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.box_head = nn.Conv2d(width, 4, 1)
        self.score_head = nn.Conv2d(width, 1, 1)
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.select(*self.candidates(image))

    def candidates(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every cell's box ``(cells, 4)`` and score ``(cells,)``, by descending score: static shapes."""
        features = self.backbone(image)
        height, width = features.shape[2], features.shape[3]
        raw = self.box_head(features).flatten(2).transpose(1, 2)[0]  # (cells, 4)
        scores = torch.sigmoid(self.score_head(features)).flatten()  # (cells,)
        ys = torch.arange(height, dtype=image.dtype).repeat_interleave(width)
        xs = torch.arange(width, dtype=image.dtype).repeat(height)
        centre = torch.stack([xs, ys], dim=1) + torch.sigmoid(raw[:, :2])
        size = 2.5 * torch.exp(raw[:, 2:].clamp(max=2.0))  # about 2.5 cells: neighbours overlap
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        order = scores.argsort(descending=True)
        return boxes[order], scores[order]

    def select(self, boxes: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The boxes NMS keeps whose score passes the threshold: a data-dependent count."""
        keep = fast_nms(boxes, scores, self.iou_threshold)
        boxes, scores = boxes.index_select(0, keep), scores.index_select(0, keep)
        confident = scores > self.score_threshold
        return boxes[confident], scores[confident]


def tiny_detector(seed: int = 0) -> TinyDetector:
    """A seeded random detector in eval mode (BatchNorm statistics randomized: no identity layers)."""
    torch.manual_seed(seed)
    model = TinyDetector()
    with torch.no_grad():
        norm = model.backbone[1]
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    return model.eval()
