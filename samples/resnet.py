"""ResNet with BasicBlocks (He et al., 2015): conv-BN-ReLU stages with residual adds.

``resnet18`` is the standard 18-layer layout for 3x224x224 inputs; ``resnet_small`` is a narrow,
shallow variant (one block per stage, 8..64 channels) for 3x32x32 inputs, quick enough for tests.
Weights are seeded random; BatchNorm running statistics are randomized too, so folding BN is not
a no-op in tests.
"""

from __future__ import annotations

import torch
from torch import nn

from samples import load_weights


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual add; a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


class ResNet(nn.Module):
    """Stem, four stages of BasicBlocks, global average pool, linear classifier."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 1000,
        small_stem: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        stem_width, image_channels = widths[0], in_channels
        if small_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(image_channels, stem_width, 3, padding=1, bias=False), nn.BatchNorm2d(stem_width), nn.ReLU()
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(image_channels, stem_width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        layers: list[nn.Module] = []
        in_channels = stem_width
        for stage, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(BasicBlock(in_channels, width, stride))
                in_channels = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.layers(self.stem(x)))))


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)


def resnet18(num_classes: int = 1000, seed: int = 0) -> ResNet:
    """ResNet-18 in eval mode with seeded random weights; input ``N x 3 x 224 x 224``."""
    torch.manual_seed(seed)
    model = ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes)
    randomize_batch_norm(model, seed)
    return model.eval()


def resnet_small(num_classes: int = 10, seed: int = 0) -> ResNet:
    """A narrow, shallow ResNet (one BasicBlock per stage, 8-64 channels) in eval mode; input ``N x 3 x 32 x 32``."""
    torch.manual_seed(seed)
    model = ResNet((1, 1, 1, 1), (8, 16, 32, 64), num_classes, small_stem=True)
    randomize_batch_norm(model, seed)
    return model.eval()


def resnet_small_digits(pretrained: bool = True) -> ResNet:
    """``resnet_small`` on 1x28x28 digits, eval mode: weights from ``samples/weights/resnet_small_digits.pt``."""
    torch.manual_seed(0)
    model = ResNet((1, 1, 1, 1), (8, 16, 32, 64), 10, small_stem=True, in_channels=1)
    return load_weights(model, "resnet_small_digits", pretrained)
