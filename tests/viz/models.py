"""Small models whose graphs the visualizer tests read (samples/ holds the bigger ones)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Conv-BN-ReLU with a residual add: a module the explorer can collapse into one box."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) + x)


class TinyNet(nn.Module):
    """stem conv -> two Blocks -> dropout -> mean -> linear, input 1x1x8x8."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.blocks = nn.Sequential(Block(4), Block(4))
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.blocks(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def tiny_graph():
    import graphopt

    torch.manual_seed(0)
    return graphopt.capture(TinyNet().eval(), torch.randn(1, 1, 8, 8))


class OffsetNet(nn.Module):
    """Conv-BN-ReLU plus an offset computed from a weight: O2's fold_constants folds ``offset * 2``
    into one new constant and fuse_conv_bn removes the BatchNorm. Input 1x1x8x8."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.offset = nn.Parameter(torch.linspace(-1, 1, 4).view(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) + self.offset * 2)
