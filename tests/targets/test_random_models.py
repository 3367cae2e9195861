"""Random small convnets (hypothesis) compiled for cpu match eager: ops in combinations, not alone."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

from tests.targets.conftest import assert_matches_eager, randomize

ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Identity]


@st.composite
def conv_blocks(draw: st.DrawFn, channels: int, size: int) -> tuple[list[nn.Module], int, int]:
    """A conv (+ BN) + activation on a ``size`` x ``size`` input; its layers, channels and output size."""
    out_channels = draw(st.sampled_from([channels, 4, 6, 8]))
    padding = draw(st.sampled_from([0, 1]))
    # A 3x3 kernel needs an input of 3 after padding: a deep stack of strides would shrink below it.
    kernel_size = draw(st.sampled_from([1, 3] if size + 2 * padding >= 3 else [1]))
    stride = draw(st.sampled_from([1, 2]))
    depthwise = draw(st.booleans()) and out_channels == channels
    layers: list[nn.Module] = [
        nn.Conv2d(
            channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            groups=channels if depthwise else 1,
            bias=draw(st.booleans()),
        )
    ]
    if draw(st.booleans()):
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(draw(st.sampled_from(ACTIVATIONS))())
    return layers, out_channels, (size + 2 * padding - kernel_size) // stride + 1


@st.composite
def convnets(draw: st.DrawFn) -> nn.Module:
    """Models for a 12x12 input (``test_random_convnets_match_eager``)."""
    channels, size, layers = 3, 12, []
    for _ in range(draw(st.integers(1, 3))):
        block, channels, size = draw(conv_blocks(channels, size))
        layers += block
    pool = draw(st.sampled_from([nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)]))
    layers += [pool, nn.Flatten(), nn.Linear(channels, 5)]
    return randomize(nn.Sequential(*layers), seed=draw(st.integers(0, 1000)))


# Always run once: a depthwise 1x1 conv (all-unit reduction domain) with a BN epilogue.
DEPTHWISE_1X1 = nn.Sequential(
    nn.Conv2d(3, 3, 1, groups=3),
    nn.BatchNorm2d(3),
    nn.ReLU(),
    nn.AdaptiveAvgPool2d(1),
    nn.Flatten(),
    nn.Linear(3, 5),
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=convnets(), batch=st.integers(1, 3))
@example(model=randomize(DEPTHWISE_1X1), batch=2)
def test_random_convnets_match_eager(model: nn.Module, batch: int, compile_cpu) -> None:
    x = torch.randn(batch, 3, 12, 12)
    assert_matches_eager(model, compile_cpu(model, x), x)
