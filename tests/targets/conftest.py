"""Helpers for target tests: capture + build, eager references, and the float32 tolerance.

TOLERANCE is a bound on ``relative_error`` = max|tvm - eager| / max|eager|. float32 has a relative
precision of 6e-8; untuned TVM loops add terms in a different order than PyTorch's kernels, so a
K-term dot product may differ by ~sqrt(K)·6e-8 relative (≈4e-6 for K = 4608, ResNet-18's widest
reduction). 1e-5 leaves room for that and nothing more: a wrong op (BN with batch statistics, a
missing bias, a transposed weight) is off by 1e-2 or more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from graphopt.capture import capture
from graphopt.numerics import flatten_outputs, relative_error
from graphopt.targets import build

TOLERANCE = 1e-5


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-default parameters and BatchNorm statistics, so a frontend using batch statistics or
    ignoring the affine terms is caught (default-initialized BN is the identity in eval mode)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) * 2 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(module.num_features, generator=generator))
            if isinstance(module, torch.nn.LayerNorm) and module.elementwise_affine:
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def eager(model: torch.nn.Module, *inputs: torch.Tensor) -> Any:
    with torch.no_grad():
        return model(*inputs)


def assert_matches_eager(model: torch.nn.Module, compiled: Callable[..., Any], *inputs: torch.Tensor) -> float:
    """Run both on the same inputs; assert the relative error is within TOLERANCE; return it."""
    expected = eager(model, *inputs)
    actual = compiled(*[t.numpy() for t in inputs])
    assert len(flatten_outputs(expected)) == len(flatten_outputs(actual))
    error = relative_error(expected, actual)
    assert error <= TOLERANCE, f"relative error {error:.3g} > {TOLERANCE}"
    return error


@pytest.fixture
def compile_cpu() -> Callable[..., Any]:
    """``compile_cpu(model, *inputs, **build_options)``: capture (no passes) and build in memory."""

    def _compile(model: torch.nn.Module, *inputs: torch.Tensor, **options: Any) -> Any:
        graph = capture(model, inputs)
        return build(graph, None, target=options.pop("target", "cpu"), **options)

    return _compile


def digits_like(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def as_numpy(*tensors: torch.Tensor) -> list[np.ndarray]:
    return [t.numpy() for t in tensors]
