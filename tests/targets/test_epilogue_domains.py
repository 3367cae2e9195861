"""A pad after a convolution on the CPU target: the padding must be written. Attached per tile to
the convolution (as bias and ReLU are), the pad's points that read no output of the tile were never
written and held whatever the memory held (ONNX ConvTranspose with ``output_padding`` gave 3e+24).
Tolerance 1e-5: float32 convolutions of a few dozen terms, summed in another order than eager's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt


class ConvThenPad(nn.Module):
    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(self.conv(x), [0, 1, 0, 1], value=0.5)


@pytest.mark.parametrize(
    "conv",
    [nn.ConvTranspose2d(1, 2, 3, stride=(3, 2), bias=False), nn.Conv2d(4, 8, 3, padding=1, bias=False)],
    ids=["conv_transpose", "conv"],
)
def test_pad_after_conv_writes_every_point(conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
    torch.manual_seed(0)
    model, x = ConvThenPad(conv).eval(), torch.randn(1, conv.in_channels, 5, 5)
    artifact = graphopt.compile(model, (x,), target="cpu", check=False)
    with torch.no_grad():
        want = model(x).numpy()
    got = np.asarray(artifact(x.numpy()))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
