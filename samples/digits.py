"""sklearn's bundled handwritten digits (1797 8x8 images; no download), upsampled to 28x28.

Images are scaled from 0..16 to 0..1, resized bilinearly to 28x28 so they fit MNIST-shaped models,
then normalized with the training split's mean and standard deviation. The train/test split is fixed
(seeded permutation, 20% test), so accuracy numbers are comparable between runs.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

TEST_FRACTION = 0.2
SEED = 0


@lru_cache(maxsize=1)
def _all_splits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    labels = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SEED))
    n_test = int(len(labels) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


def load_digits_28(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: x float32 ``N x 1 x 28 x 28`` normalized, y int64 ``N``; split "train" or "test".

    >>> x, y = load_digits_28("test")
    >>> x.shape, y.shape
    (torch.Size([359, 1, 28, 28]), torch.Size([359]))
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = _all_splits()[split]
    return x.clone(), y.clone()


def load_digits_flat(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as ``load_digits_28`` with x flattened to ``N x 784`` (input of ``MnistMLP``)."""
    x, y = load_digits_28(split)
    return x.reshape(len(x), 784), y


def accuracy(model: object, flat: bool = False) -> float:
    """Top-1 accuracy in percent of ``model`` (a callable on a batch tensor giving logits) on the test split."""
    x, y = load_digits_flat("test") if flat else load_digits_28("test")
    with torch.no_grad():
        logits = model(x)  # type: ignore[operator]
    return float((logits.argmax(dim=1) == y).float().mean()) * 100


def accuracy_flat(model: object) -> float:
    """``accuracy`` on flattened inputs (``MnistMLP``): ``graphopt compress --eval samples.digits:accuracy_flat``."""
    return accuracy(model, flat=True)


def train_flat() -> tuple[torch.Tensor, torch.Tensor]:
    """The training split, flattened: ``graphopt compress --data samples.digits:train_flat``."""
    return load_digits_flat("train")


def train_28() -> tuple[torch.Tensor, torch.Tensor]:
    """The training split as ``N x 1 x 28 x 28``: ``graphopt distill --data samples.digits:train_28``."""
    return load_digits_28("train")
