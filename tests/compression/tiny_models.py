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


def tiny_student() -> nn.Module:
    """Half the teacher's hidden width (the ``graphopt distill`` tests)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)).eval()


def wrong_student() -> nn.Module:
    """Three outputs where the teacher has five."""
    return nn.Sequential(nn.Linear(32, 3)).eval()


def raising_data() -> tuple[torch.Tensor, torch.Tensor]:
    raise RuntimeError("the data server is down")


def agreement(model: object) -> float:
    """Percent of the inputs on which ``model`` predicts the class ``tiny_mlp`` (the teacher) predicts."""
    with torch.no_grad():
        teacher = tiny_mlp()(INPUTS).argmax(dim=1)
        return float((model(INPUTS).argmax(dim=1) == teacher).float().mean()) * 100  # type: ignore[operator]
