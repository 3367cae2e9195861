"""The benchmark suite's models: the repo's samples with random (seeded) weights and fixed inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Workload:
    name: str
    make_model: Callable[[], torch.nn.Module]
    input_shape: tuple[int, ...]

    def build(self) -> tuple[torch.nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        model = self.make_model().eval()
        x = torch.randn(*self.input_shape, generator=torch.Generator().manual_seed(1))
        return model, x


def _mlp() -> torch.nn.Module:
    from samples.mnist_mlp import mnist_mlp

    return mnist_mlp(pretrained=False)


def _cnn() -> torch.nn.Module:
    from samples.cnn import digits_cnn

    return digits_cnn(pretrained=False)


def _resnet18() -> torch.nn.Module:
    from samples.resnet import resnet18

    return resnet18()


def _mobilenet_v2() -> torch.nn.Module:
    from samples.mobilenet import mobilenet_v2

    return mobilenet_v2()


def _transformer() -> torch.nn.Module:
    from samples.transformer import transformer_encoder

    return transformer_encoder(d_model=256, nhead=4, num_layers=4, seq_len=128)


WORKLOADS = {
    w.name: w
    for w in [
        Workload("mlp-b1", _mlp, (1, 784)),
        Workload("mlp-b64", _mlp, (64, 784)),
        Workload("cnn-b1", _cnn, (1, 1, 28, 28)),
        Workload("cnn-b64", _cnn, (64, 1, 28, 28)),
        Workload("resnet18", _resnet18, (1, 3, 224, 224)),
        Workload("mobilenet_v2", _mobilenet_v2, (1, 3, 224, 224)),
        Workload("transformer", _transformer, (1, 128, 256)),
    ]
}
