"""A small CNN for 1x28x28 digits: two Conv-BN-ReLU blocks, max-pool, a linear classifier."""

from __future__ import annotations

import torch
from torch import nn

from samples import WEIGHTS_DIR


class DigitsCNN(nn.Module):
    """Input ``N x 1 x 28 x 28`` float32; output ``N x 10`` logits."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * channels)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * channels * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.flatten(x))


def digits_cnn(pretrained: bool = True) -> DigitsCNN:
    """A ``DigitsCNN`` in eval mode: trained weights from ``samples/weights/digits_cnn.pt``, else seeded random."""
    torch.manual_seed(0)
    model = DigitsCNN()
    if pretrained:
        path = WEIGHTS_DIR / "digits_cnn.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `python -m samples.train` to create it")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def half_width_cnn() -> DigitsCNN:
    """An untrained ``DigitsCNN`` of half the channels (8 and 16), seeded: the distillation student."""
    torch.manual_seed(0)
    return DigitsCNN(channels=8)
