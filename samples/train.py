"""Train the sample classifiers on the digits data and save their weights.

    python -m samples.train            # writes samples/weights/NAME.pt for each model of JOBS

Full-batch-ish Adam for a few epochs on CPU: seconds per model. Seeded, so reruns give the same
weights on the same torch build. Prints test accuracy (both reach over 95%).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from samples import WEIGHTS_DIR
from samples.cnn import DigitsCNN
from samples.digits import load_digits_28
from samples.mnist_mlp import MnistMLP
from samples.mobilenet import mobilenet_small_digits
from samples.resnet import resnet_small_digits


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


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), 784)


def _image(x: torch.Tensor) -> torch.Tensor:
    return x


# name -> (untrained model factory, input reshape, epochs)
JOBS: dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Tensor], torch.Tensor], int]] = {
    "mnist_mlp": (MnistMLP, _flat, 15),
    "digits_cnn": (DigitsCNN, _image, 8),
    "resnet_small_digits": (lambda: resnet_small_digits(pretrained=False), _image, 8),
    "mobilenet_small_digits": (lambda: mobilenet_small_digits(pretrained=False), _image, 10),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(JOBS), help="train only this model")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x_train, y_train = load_digits_28("train")
    x_test, y_test = load_digits_28("test")
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, (model_class, reshape, epochs) in JOBS.items():
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
