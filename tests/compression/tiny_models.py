"""A tiny MLP and its data for the ``graphopt compress`` tests (builds in seconds, unlike the samples)."""

from __future__ import annotations

import torch
from torch import nn

INPUTS = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
LABELS = INPUTS[:, :5].argmax(dim=1)


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 5)).eval()


def accuracy(model: object) -> float:
    with torch.no_grad():
        return float((model(INPUTS).argmax(dim=1) == LABELS).float().mean()) * 100  # type: ignore[operator]


def train_data() -> tuple[torch.Tensor, torch.Tensor]:
    return INPUTS, LABELS
