"""Our own tiny model of each architecture family: the patterns third-party code uses, at a small size."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from samples.corpus import Entry
from samples.detection import tiny_detector


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: type = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act()
    )


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a, self.b = (
            _conv_bn(cin, cout, stride=stride),
            nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout)),
        )
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(self.a(x)) + self.skip(x))


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(c, c // 4, 1), _conv_bn(c // 4, c // 4), nn.Conv2d(c // 4, c, 1), nn.BatchNorm2d(c)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.body = nn.Sequential(
            _conv_bn(c, h, 1, act=nn.ReLU6), _conv_bn(h, h, groups=h, act=nn.ReLU6), nn.Conv2d(h, c, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = _conv_bn(c, c, groups=c, act=nn.SiLU)
        self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        scale = torch.sigmoid(self.fc2(F.silu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return x + y * scale


class ShuffleUnit(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            _conv_bn(c // 2, c // 2, 1), _conv_bn(c // 2, c // 2, groups=c // 2), _conv_bn(c // 2, c // 2, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        y = torch.cat([a, self.branch(b)], dim=1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class DenseBlock(nn.Module):
    def __init__(self, c: int, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_conv_bn(c + i * growth, growth) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw, self.norm = nn.Conv2d(c, c, 7, padding=3, groups=c), nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.gamma = nn.Parameter(torch.full((c,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.dw(x).permute(0, 2, 3, 1))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


def _classifier(body: nn.Module, channels: int, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


def _image(batch: int = 2, channels: int = 3, size: int = 16) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, channels, size, size),)


class UNet(nn.Module):
    """Segmentation: encoder, transposed-conv decoder, skip concatenation, per-pixel classes."""

    def __init__(self) -> None:
        super().__init__()
        self.down1, self.down2 = _conv_bn(3, 8), _conv_bn(8, 16, stride=2)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = nn.Sequential(_conv_bn(16, 8), nn.Conv2d(8, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(x)
        return self.head(torch.cat([a, self.up(self.down2(a))], dim=1))


class FCN(nn.Module):
    """Segmentation with bilinear upsampling back to the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(3, 8, stride=2), _conv_bn(8, 16, stride=2), nn.Conv2d(16, 5, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class SuperResolution(nn.Module):
    """ESPCN: convs then PixelShuffle to twice the resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.Tanh(), nn.Conv2d(16, 4, 3, padding=1), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Video3D(nn.Module):
    """C3D-style video classifier: Conv3d, BatchNorm3d, 3-D pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(3, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU(), nn.MaxPool3d(2), nn.Conv3d(8, 8, 3, padding=1)
        )
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3, 4)))


class TemporalConv(nn.Module):
    """Audio / time series: dilated Conv1d stack with residuals and GroupNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv1d(2, 8, 1)
        self.layers = nn.ModuleList(nn.Conv1d(8, 8, 3, padding=d, dilation=d) for d in (1, 2, 4))
        self.norm, self.fc = nn.GroupNorm(2, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for layer in self.layers:
            h = h + torch.tanh(layer(h))
        return self.fc(self.norm(h).amax(dim=2))


class TextCNN(nn.Module):
    """Token ids -> Embedding -> Conv1d of three widths -> max over time -> classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.convs = nn.ModuleList(nn.Conv1d(8, 6, k) for k in (2, 3, 4))
        self.fc = nn.Linear(18, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids).transpose(1, 2)
        return self.fc(torch.cat([F.relu(conv(h)).max(dim=2).values for conv in self.convs], dim=1))


class RecurrentTagger(nn.Module):
    """Embedding + bidirectional two-layer LSTM + per-token classes and the last step's summary."""

    def __init__(self, kind: str = "LSTM") -> None:
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.rnn = getattr(nn, kind)(8, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(16, 5)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.rnn(self.embed(ids))
        return self.fc(out), out[:, -1]


class TransformerLM(nn.Module):
    """GPT-style: token + position embeddings, causal nn.TransformerEncoder, tied output projection."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.position = nn.Embedding(40, 16), nn.Parameter(torch.randn(1, 8, 16) * 0.1)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.register_buffer("causal", torch.triu(torch.full((8, 8), float("-inf")), diagonal=1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(ids) + self.position, mask=self.causal, is_causal=True)
        return h @ self.embed.weight.t()


class VisionTransformer(nn.Module):
    """ViT: patch-embedding conv, class token, position embedding, pre-norm encoder, class head.

    Tiny by default (16x16 images, 4x4 patches, 2 layers of width 16); ``VisionTransformer.b16()``
    is ViT-B/16 (224x224, 16x16 patches, 12 layers of width 768, 12 heads, MLP 3072, 1000 classes).
    """

    def __init__(
        self,
        size: int = 16,
        patch: int = 4,
        dim: int = 16,
        depth: int = 2,
        heads: int = 4,
        mlp: int = 32,
        classes: int = 10,
    ) -> None:
        super().__init__()
        tokens = (size // patch) ** 2 + 1
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, tokens, dim) * 0.1)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            mlp,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))

    @classmethod
    def b16(cls) -> VisionTransformer:
        return cls(size=224, patch=16, dim=768, depth=12, heads=12, mlp=3072, classes=1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.position
        return self.head(self.encoder(h)[:, 0])


class MLPMixer(nn.Module):
    """Token-mixing and channel-mixing MLPs over image patches."""

    def __init__(self) -> None:
        super().__init__()
        self.patch, self.norm1, self.norm2 = nn.Conv2d(3, 16, 4, stride=4), nn.LayerNorm(16), nn.LayerNorm(16)
        self.tokens = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.channels = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)  # (N, 16 patches, 16 channels)
        h = h + self.tokens(self.norm1(h).transpose(1, 2)).transpose(1, 2)
        h = h + self.channels(self.norm2(h))
        return self.fc(h.mean(1))


class Correlation(nn.Module):
    """Optical flow: shared features of two frames, a local cost volume (shifted products), flow head."""

    def __init__(self) -> None:
        super().__init__()
        self.features, self.flow = _conv_bn(3, 8, stride=2), nn.Conv2d(9, 2, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.features(a), F.pad(self.features(b), (1, 1, 1, 1))
        h, w = fa.shape[-2:]
        costs = [(fa * fb[:, :, i : i + h, j : j + w]).mean(1, keepdim=True) for i in range(3) for j in range(3)]
        return self.flow(torch.cat(costs, dim=1))


class Siamese(nn.Module):
    """Two inputs through one shared encoder; cosine similarity and a multi-task dict of outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(12, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 8))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        ea, eb = self.encoder(a), self.encoder(b)
        return {"similarity": F.cosine_similarity(ea, eb), "distance": (ea - eb).norm(dim=1), "embedding": ea}


class AutoEncoder(nn.Module):
    """Conv encoder, linear bottleneck, transposed-conv decoder with InstanceNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(8 * 8 * 8, 16))
        self.expand = nn.Linear(16, 8 * 8 * 8)
        self.decode = nn.Sequential(nn.InstanceNorm2d(8, affine=True), nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.expand(self.encode(x)).view(-1, 8, 8, 8))


def _ids(vocab: int, length: int = 8) -> tuple[torch.Tensor, ...]:
    return (torch.randint(0, vocab, (2, length)),)


def entries() -> list[Entry]:
    return [
        Entry(
            "mlp",
            "mlp",
            lambda: (
                nn.Sequential(nn.Linear(20, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 5)),
                (torch.randn(4, 20),),
            ),
            fast=True,
        ),
        Entry(
            "lenet",
            "convnet",
            lambda: (
                nn.Sequential(
                    nn.Conv2d(1, 6, 5),
                    nn.Tanh(),
                    nn.AvgPool2d(2),
                    nn.Conv2d(6, 16, 5),
                    nn.Tanh(),
                    nn.Flatten(),
                    nn.Linear(16 * 8 * 8, 10),
                ),
                _image(2, 1, 28),
            ),
        ),
        Entry(
            "vgg_tiny",
            "convnet",
            lambda: (
                _classifier(nn.Sequential(_conv_bn(3, 8), _conv_bn(8, 8), nn.MaxPool2d(2), _conv_bn(8, 16)), 16),
                _image(),
            ),
        ),
        Entry(
            "resnet_basic",
            "resnet",
            lambda: (
                _classifier(nn.Sequential(_conv_bn(3, 8), BasicBlock(8, 8, 1), BasicBlock(8, 16, 2)), 16),
                _image(),
            ),
        ),
        Entry(
            "resnet_bottleneck",
            "resnet",
            lambda: (_classifier(nn.Sequential(_conv_bn(3, 16), Bottleneck(16), Bottleneck(16)), 16), _image()),
        ),
        Entry(
            "mobilenet_v2_block",
            "mobile",
            lambda: (
                _classifier(
                    nn.Sequential(_conv_bn(3, 8, stride=2, act=nn.ReLU6), InvertedResidual(8), InvertedResidual(8)), 8
                ),
                _image(),
            ),
        ),
        Entry(
            "efficientnet_se",
            "mobile",
            lambda: (_classifier(nn.Sequential(_conv_bn(3, 8, act=nn.SiLU), SqueezeExcite(8)), 8), _image()),
        ),
        Entry(
            "shufflenet_unit",
            "mobile",
            lambda: (_classifier(nn.Sequential(_conv_bn(3, 8), ShuffleUnit(8), ShuffleUnit(8)), 8), _image()),
            fast=True,
        ),
        Entry(
            "densenet_block",
            "convnet",
            lambda: (_classifier(nn.Sequential(_conv_bn(3, 8), DenseBlock(8)), 20), _image()),
        ),
        Entry(
            "convnext_block",
            "convnet",
            lambda: (_classifier(nn.Sequential(nn.Conv2d(3, 16, 4, 4), ConvNeXtBlock(16)), 16), _image()),
        ),
        Entry("unet", "segmentation", lambda: (UNet(), _image())),
        Entry("fcn_bilinear", "segmentation", lambda: (FCN(), _image())),
        Entry("espcn", "super-resolution", lambda: (SuperResolution(), _image(1, 1, 12))),
        Entry("c3d", "video", lambda: (Video3D(), (torch.randn(1, 3, 4, 8, 8),))),
        Entry("temporal_conv", "audio", lambda: (TemporalConv(), (torch.randn(2, 2, 32),))),
        Entry("text_cnn", "text", lambda: (TextCNN(), _ids(50, 10))),
        Entry("lstm_tagger", "recurrent", lambda: (RecurrentTagger("LSTM"), _ids(30, 5))),
        Entry("gru_tagger", "recurrent", lambda: (RecurrentTagger("GRU"), _ids(30, 5))),
        Entry("transformer_lm", "transformer", lambda: (TransformerLM(), _ids(40))),
        Entry("vit_tiny", "transformer", lambda: (VisionTransformer(), _image()), fast=True),
        Entry(  # full size, nn.TransformerEncoderLayer's attention (the std::bad_alloc)
            "vit_b16", "transformer", lambda: (VisionTransformer.b16(), (torch.randn(1, 3, 224, 224),))
        ),
        Entry("mlp_mixer", "mixer", lambda: (MLPMixer(), _image())),
        Entry("correlation_flow", "optical-flow", lambda: (Correlation(), _image() + _image())),
        Entry("siamese_dict", "multi-input", lambda: (Siamese(), (torch.randn(3, 12), torch.randn(3, 12))), fast=True),
        Entry("autoencoder", "generative", lambda: (AutoEncoder(), _image(2, 1, 16))),
        Entry(  # NMS keeps a data-dependent number of boxes: that part runs in PyTorch
            "tiny_detector",
            "detection",
            lambda: (tiny_detector(), (torch.randn(1, 3, 32, 32),)),
            options={"fallback": "torch"},
        ),
    ]
