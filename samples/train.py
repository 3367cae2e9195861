"""Train the two sample classifiers on the digits data and save their weights.

    python -m samples.train            # writes samples/weights/mnist_mlp.pt and digits_cnn.pt

Full-batch-ish Adam for a few epochs on CPU: seconds per model. Seeded, so reruns give the same
weights on the same torch build. Prints test accuracy (both reach over 95%).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from samples import WEIGHTS_DIR
from samples.cnn import DigitsCNN
from samples.digits import load_digits_28
from samples.mnist_mlp import MnistMLP


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` (in eval mode) labels as ``y``."""
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float = 1e-3, batch: int = 64) -> None:
    """Mini-batch Adam with cross-entropy; the shuffle order is seeded."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch):
            index = order[start : start + batch]
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["mnist_mlp", "digits_cnn"], help="train only this model")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x_train, y_train = load_digits_28("train")
    x_test, y_test = load_digits_28("test")
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    jobs = {
        "mnist_mlp": (MnistMLP, lambda x: x.reshape(len(x), 784), 15),
        "digits_cnn": (DigitsCNN, lambda x: x, 8),
    }
    for name, (model_class, reshape, epochs) in jobs.items():
        if args.only and name != args.only:
            continue
        torch.manual_seed(0)
        model = model_class()
        start = time.perf_counter()
        train(model, reshape(x_train), y_train, epochs)
        path = WEIGHTS_DIR / f"{name}.pt"
        torch.save(model.state_dict(), path)
        test_accuracy = accuracy(model, reshape(x_test), y_test)
        print(f"{name}: test accuracy {test_accuracy:.1%} ({time.perf_counter() - start:.1f} s), saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
