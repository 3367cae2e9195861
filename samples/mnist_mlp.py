"""The seed model: a 784-256-128-10 MLP with ReLU, trained on the digits data (``samples/train.py``)."""

from __future__ import annotations

import torch
from torch import nn

from samples import WEIGHTS_DIR


class MnistMLP(nn.Module):
    """Input ``N x 784`` float32 (a flattened 28x28 image); output ``N x 10`` logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(256, 128)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


def mnist_mlp(pretrained: bool = True) -> MnistMLP:
    """An ``MnistMLP`` in eval mode: trained weights from ``samples/weights/mnist_mlp.pt``, else seeded random.

    >>> model = mnist_mlp()
    >>> model(torch.zeros(1, 784)).shape
    torch.Size([1, 10])
    """
    torch.manual_seed(0)
    model = MnistMLP()
    if pretrained:
        path = WEIGHTS_DIR / "mnist_mlp.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `python -m samples.train` to create it")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
