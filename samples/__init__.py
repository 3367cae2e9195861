"""Sample models and data for examples, tests and benchmarks.

Every model is written here with plain ``torch.nn`` (PyPI's torchvision does not work with the
pinned torch), with seeded random weights unless trained weights ship in ``samples/weights/``:

- ``mnist_mlp.MnistMLP`` / ``mnist_mlp()``: 784-256-128-10 MLP, trained on ``digits``.
- ``cnn.DigitsCNN`` / ``digits_cnn()``: Conv-BN-ReLU x2, pool, linear on 1x28x28, trained on ``digits``.
- ``resnet.resnet18()`` / ``resnet_small()``: ResNet with BasicBlocks, BatchNorm and residual adds.
- ``mobilenet.mobilenet_v2()`` / ``mobilenet_small()``: inverted residuals, depthwise conv, ReLU6.
- ``transformer.transformer_encoder()``: explicit attention, LayerNorm and GELU feed-forward.
- ``digits.load_digits_28()`` / ``load_digits_flat()``: sklearn's bundled digits (no download).
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
