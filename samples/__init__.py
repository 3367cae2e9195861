"""Sample models and data for examples, tests and benchmarks.

Every model is written here with plain ``torch.nn`` (PyPI's torchvision does not work with the
pinned torch), with seeded random weights unless trained weights ship in ``samples/weights/``:

- ``mnist_mlp.MnistMLP`` / ``mnist_mlp()``: 784-256-128-10 MLP, trained on ``digits``.
- ``cnn.DigitsCNN`` / ``digits_cnn()``: Conv-BN-ReLU x2, pool, linear on 1x28x28, trained on ``digits``.
- ``resnet.resnet18()`` / ``resnet_small()``: ResNet with BasicBlocks, BatchNorm and residual adds.
- ``mobilenet.mobilenet_v2()`` / ``mobilenet_small()``: inverted residuals, depthwise conv, ReLU6.
- ``transformer.transformer_encoder()``: explicit attention, LayerNorm and GELU feed-forward.
- ``resnet.resnet_small_digits()`` / ``mobilenet.mobilenet_small_digits()``: the small ResNet and
  MobileNetV2 with a 1-channel stem, trained on ``digits`` (1x28x28).
- ``pruning_patterns``: DenseNet, ResNeXt and ShuffleNet blocks (concat, grouped conv, channel shuffle).
- ``digits.load_digits_28()`` / ``load_digits_flat()``: sklearn's bundled digits (no download).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def load_weights(model: Any, name: str, pretrained: bool = True) -> Any:
    """``model`` in eval mode with ``samples/weights/NAME.pt`` loaded (if ``pretrained``), else as initialized."""
    if pretrained:
        import torch

        path = WEIGHTS_DIR / f"{name}.pt"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `python -m samples.train --only {name}` to create it")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
