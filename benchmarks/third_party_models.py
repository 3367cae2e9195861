"""Third-party architectures as users bring them, written here at full size with random (seeded) weights.

Each follows its reference definition (torchvision / timm / the papers) layer for layer: the same
widths, depths, kernel sizes, strides, activations and normalizations, so the kernels graphopt
compiles are those of the real network. BERT-base and GPT-2-small are ``transformers``' own model
classes from their default configs (no download). Inputs: 224x224 images, 128-token sequences.

    ResNet-50 (v1.5)   bottleneck blocks, stride on the 3x3                      4.1 GFLOP
    EfficientNet-B0    MBConv: depthwise 3x3/5x5, squeeze-excitation, SiLU       0.4 GFLOP
    ConvNeXt-T         7x7 depthwise, channels-last LayerNorm, GELU MLP          4.5 GFLOP
    RegNetY-400MF      grouped 3x3 (group width 8) + squeeze-excitation          0.4 GFLOP
    MobileNetV3-L      depthwise, hardswish, squeeze-excitation (hardsigmoid)    0.2 GFLOP
    ViT-B/16           16x16 patches, 12 pre-norm nn.TransformerEncoderLayer     17.6 GFLOP
    BERT-base, GPT-2   transformers' BertModel / GPT2Model, sequence 128         ~11 GFLOP
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.models import Workload


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(
    cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: Callable | None = nn.ReLU
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Global average pool -> 1x1 conv -> activation -> 1x1 conv -> gate -> scale the input."""

    def __init__(self, channels: int, squeeze: int, act: Callable = nn.ReLU, gate: Callable = nn.Sigmoid) -> None:
        super().__init__()
        self.fc1, self.act = nn.Conv2d(channels, squeeze, 1), act()
        self.fc2, self.gate = nn.Conv2d(squeeze, channels, 1), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


def _classifier(features: nn.Module, channels: int, classes: int = 1000) -> nn.Sequential:
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


# ResNet-50 -------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.body = nn.Sequential(
            conv_bn(cin, width, 1), conv_bn(width, width, 3, stride), conv_bn(width, cout, 1, act=None)
        )
        self.skip = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet50() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, depth, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(depth):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = 4 * width
    return _classifier(nn.Sequential(*layers), cin)


# EfficientNet-B0 -------------------------------------------------------------------------------------


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [
            conv_bn(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcitation(hidden, max(1, cin // 4), act=nn.SiLU),
            conv_bn(hidden, cout, 1, act=None),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def efficientnet_b0() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
    cin = 32
    stages = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3)]
    stages += [(6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    for expand, k, stride, cout, repeats in stages:
        for i in range(repeats):
            layers.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
            cin = cout
    layers.append(conv_bn(cin, 1280, 1, act=nn.SiLU))
    return _classifier(nn.Sequential(*layers), 1280)


# ConvNeXt-T ------------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, as timm writes it: permute, normalize, permute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw, self.norm = nn.Conv2d(c, c, 7, padding=3, groups=c), nn.LayerNorm(c, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.gamma = nn.Parameter(torch.full((c,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


def convnext_tiny() -> nn.Module:
    dims, depths = [96, 192, 384, 768], [3, 3, 9, 3]
    layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
    for stage, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
        if stage:
            layers += [LayerNorm2d(dims[stage - 1], eps=1e-6), nn.Conv2d(dims[stage - 1], dim, 2, 2)]
        layers += [ConvNeXtBlock(dim) for _ in range(depth)]
    features = nn.Sequential(*layers)
    return nn.Sequential(
        features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(dims[-1], eps=1e-6), nn.Linear(dims[-1], 1000)
    )


# RegNetY-400MF ---------------------------------------------------------------------------------------


class RegNetYBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 1),
            conv_bn(cout, cout, 3, stride, groups=cout // group_width),
            SqueezeExcitation(cout, round(0.25 * cin)),
            conv_bn(cout, cout, 1, act=None),
        )
        self.skip = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def regnety_400mf() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
    cin = 32
    for width, depth in [(48, 1), (104, 3), (208, 6), (440, 6)]:
        for i in range(depth):
            layers.append(RegNetYBlock(cin, width, 2 if i == 0 else 1))
            cin = width
    return _classifier(nn.Sequential(*layers), cin)


# MobileNetV3-Large -----------------------------------------------------------------------------------


class InvertedResidualV3(nn.Module):
    def __init__(self, cin: int, k: int, hidden: int, cout: int, se: bool, act: Callable, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1, act=act)] if hidden != cin else []
        layers.append(conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcitation(hidden, _make_divisible(hidden / 4), gate=nn.Hardsigmoid))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v3_large() -> nn.Module:
    re, hs = nn.ReLU, nn.Hardswish
    config = [
        (3, 16, 16, False, re, 1), (3, 64, 24, False, re, 2), (3, 72, 24, False, re, 1),
        (5, 72, 40, True, re, 2), (5, 120, 40, True, re, 1), (5, 120, 40, True, re, 1),
        (3, 240, 80, False, hs, 2), (3, 200, 80, False, hs, 1), (3, 184, 80, False, hs, 1),
        (3, 184, 80, False, hs, 1), (3, 480, 112, True, hs, 1), (3, 672, 112, True, hs, 1),
        (5, 672, 160, True, hs, 2), (5, 960, 160, True, hs, 1), (5, 960, 160, True, hs, 1),
    ]  # fmt: skip
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=hs)]
    cin = 16
    for k, hidden, cout, se, act, stride in config:
        layers.append(InvertedResidualV3(cin, k, hidden, cout, se, act, stride))
        cin = cout
    layers.append(conv_bn(cin, 960, 1, act=hs))
    return nn.Sequential(
        nn.Sequential(*layers), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(960, 1280), hs(), nn.Linear(1280, 1000)
    )


# ViT-B/16 --------------------------------------------------------------------------------------------


class ViT(nn.Module):
    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, patch: int = 16, size: int = 224) -> None:
        super().__init__()
        tokens = (size // patch) ** 2 + 1
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.position = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 1000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.position
        return self.head(self.encoder(h)[:, 0])


# BERT-base, GPT-2-small (transformers) ---------------------------------------------------------------


class LastHidden(nn.Module):
    """``model(input_ids)`` reduced to its ``last_hidden_state``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).last_hidden_state


def _transformers() -> None:
    from samples.corpus.hf import _hide_broken_torchvision

    _hide_broken_torchvision()


def bert_base() -> nn.Module:
    _transformers()
    from transformers import BertConfig, BertModel

    return LastHidden(BertModel(BertConfig(attn_implementation="eager"), add_pooling_layer=False))


def gpt2_small() -> nn.Module:
    _transformers()
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(attn_implementation="eager")
    config.use_cache = False
    return LastHidden(GPT2Model(config))


class TokenWorkload(Workload):
    """A text model: the input is token ids in ``[0, vocab)``, not a float image."""

    def build(self) -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        model = self.make_model().eval()
        x = torch.randint(0, 20000, self.input_shape, generator=torch.Generator().manual_seed(1))
        return model, x


MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "resnet50": (resnet50, "image"),
    "efficientnet_b0": (efficientnet_b0, "image"),
    "convnext_tiny": (convnext_tiny, "image"),
    "regnety_400mf": (regnety_400mf, "image"),
    "mobilenet_v3_large": (mobilenet_v3_large, "image"),
    "vit_b16": (ViT, "image"),
    "bert_base": (bert_base, "text"),
    "gpt2_small": (gpt2_small, "text"),
}
CNNS = ["resnet50", "efficientnet_b0", "convnext_tiny", "regnety_400mf", "mobilenet_v3_large"]


def workload(name: str, batch: int) -> Workload:
    make, kind = MODELS[name]
    if kind == "text":
        return TokenWorkload(f"{name}-b{batch}", make, (batch, 128))
    return Workload(f"{name}-b{batch}", make, (batch, 3, 224, 224))


WORKLOADS = {w.name: w for w in (workload(m, b) for m in MODELS for b in (1, 8))}

if __name__ == "__main__":  # parameter counts, a quick check that every model builds and runs
    for name in sys.argv[1:] or list(MODELS):
        model, x = WORKLOADS[f"{name}-b1"].build()
        with torch.inference_mode():
            out = model(x)
        print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, output {tuple(out.shape)}")
