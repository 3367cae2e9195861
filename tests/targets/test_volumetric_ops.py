"""5-d ops on the CPU target that TVM's frontend refused: ``nn.ConvTranspose3d`` (strides, padding,
output padding, dilation, groups, bias) and volumetric ``F.grid_sample``, against eager.

Tolerance: float32 sums of up to 2*3*3*3 = 54 products (or 8 trilinear terms) in another order, ~1e-6
relative; 1e-5 flags any real difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt


@pytest.mark.parametrize(
    "options",
    [{}, {"stride": 2, "padding": 1, "output_padding": 1}, {"dilation": 2, "groups": 2, "bias": False}],
    ids=["plain", "strided", "dilated-grouped"],
)
def test_conv_transpose3d_matches_eager(options):
    torch.manual_seed(0)
    layer = nn.ConvTranspose3d(4, 6, 3, **options).eval()
    x = torch.randn(1, 4, 3, 4, 5)
    artifact = graphopt.compile(layer, (x,), target="cpu")
    np.testing.assert_allclose(np.asarray(artifact(x.numpy())), layer(x).detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_volumetric_grid_sample_matches_eager(mode, align_corners):
    """``F.grid_sample`` on 5-d input (trilinear or nearest), grid points inside and outside the volume."""

    class Sample(nn.Module):
        def forward(self, x, grid):
            return nn.functional.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=align_corners)

    generator = torch.Generator().manual_seed(0)
    x, grid = (
        torch.randn(2, 3, 4, 5, 6, generator=generator),
        torch.rand(2, 3, 2, 4, 3, generator=generator) * 2.4 - 1.2,
    )
    artifact = graphopt.compile(Sample().eval(), (x, grid), target="cpu")
    np.testing.assert_allclose(
        np.asarray(artifact(x.numpy(), grid.numpy())), Sample()(x, grid).numpy(), rtol=1e-5, atol=1e-5
    )
