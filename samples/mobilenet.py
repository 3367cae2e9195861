"""MobileNetV2 (Sandler et al., 2018): inverted residual blocks with depthwise convolutions and ReLU6.

``mobilenet_v2`` is the standard width-1.0 layout for 3x224x224 inputs; ``mobilenet_small`` keeps
every kind of block (expansion 1 and 6, stride 1 and 2, residual and not) at a fraction of the
size, for 3x32x32 inputs. Weights and BatchNorm statistics are seeded random.
"""

from __future__ import annotations

import torch
from torch import nn

from samples import load_weights
from samples.resnet import randomize_batch_norm


def conv_bn_relu6(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear projection; residual add when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(in_channels, hidden, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


#: (expansion t, output channels c, repeats n, first stride s) of MobileNetV2's Table 2.
V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        settings: tuple[tuple[int, int, int, int], ...] = V2_SETTINGS,
        stem_channels: int = 32,
        last_channels: int = 1280,
        num_classes: int = 1000,
        stem_stride: int = 2,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(image_channels, stem_channels, 3, stem_stride)]
        in_channels = stem_channels
        for expansion, channels, repeats, stride in settings:
            for index in range(repeats):
                layers.append(InvertedResidual(in_channels, channels, stride if index == 0 else 1, expansion))
                in_channels = channels
        layers.append(conv_bn_relu6(in_channels, last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(last_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def mobilenet_v2(num_classes: int = 1000, seed: int = 0) -> MobileNetV2:
    """MobileNetV2 (width 1.0) in eval mode with seeded random weights; input ``N x 3 x 224 x 224``."""
    torch.manual_seed(seed)
    model = MobileNetV2(num_classes=num_classes)
    randomize_batch_norm(model, seed)
    return model.eval()


def mobilenet_small(num_classes: int = 10, seed: int = 0) -> MobileNetV2:
    """A small MobileNetV2 (5 inverted residual blocks, 8-32 channels) in eval mode; input ``N x 3 x 32 x 32``."""
    torch.manual_seed(seed)
    settings = ((1, 8, 1, 1), (6, 16, 2, 2), (6, 32, 2, 2))
    model = MobileNetV2(settings, stem_channels=8, last_channels=64, num_classes=num_classes, stem_stride=1)
    randomize_batch_norm(model, seed)
    return model.eval()


def mobilenet_small_digits(pretrained: bool = True) -> MobileNetV2:
    """``mobilenet_small`` on 1x28x28 digits, eval mode: weights from ``samples/weights/mobilenet_small_digits.pt``."""
    torch.manual_seed(0)
    settings = ((1, 8, 1, 1), (6, 16, 2, 2), (6, 32, 2, 2))
    model = MobileNetV2(settings, stem_channels=8, last_channels=64, num_classes=10, stem_stride=1, image_channels=1)
    return load_weights(model, "mobilenet_small_digits", pretrained)
