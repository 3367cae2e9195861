"""Small blocks with the couplings structured pruning must follow: concat, grouped conv, channel shuffle.

Seeded random weights (``torch.manual_seed`` before construction); inputs ``N x 3 x H x W``, output
``N x 10``. Used by ``tests/pruning`` and ``benchmarks/pruning_vs_torch_pruning.py``.
"""

from __future__ import annotations

import torch
from torch import nn


class DenseBlock(nn.Module):
    """DenseNet style: every layer reads the concatenation of all before it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.layers = nn.ModuleList([nn.Conv2d(16 + 8 * i, 8, 3, padding=1) for i in range(3)])
        self.fc = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for layer in self.layers:
            h = torch.cat([h, torch.relu(layer(h))], dim=1)
        return self.fc(h.mean((2, 3)))


class ResNeXtBlock(nn.Module):
    """1x1 reduce, 3x3 grouped conv (4 groups), 1x1 expand, residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.reduce = nn.Conv2d(32, 32, 1)
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.expand = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = h + self.expand(torch.relu(self.grouped(torch.relu(self.reduce(h)))))
        return self.fc(h.mean((2, 3)))


class ShuffleBlock(nn.Module):
    """ShuffleNet style: grouped 1x1, channel shuffle (view/transpose/view), depthwise, grouped 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.g1 = nn.Conv2d(32, 32, 1, groups=4)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.g2 = nn.Conv2d(32, 32, 1, groups=4)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.g1(self.stem(x)))
        n, c, height, width = h.shape
        h = h.view(n, 4, c // 4, height, width).transpose(1, 2).reshape(n, c, height, width)
        return self.fc(self.g2(self.dw(h)).mean((2, 3)))
