"""``torch.split`` with an empty part and ``squeeze`` of dims that are not all 1 on the CPU target
(``targets/lowering/split_squeeze.py``): the first failed to build ("split_ind"), the second aborted
TVM's build. Both only move values, so outputs are compared exactly with eager."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import graphopt


class SplitWithEmptyParts(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(x, [2, 0, 3, 0], dim=1)


class SqueezeSome(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.squeeze(), x.squeeze((0, 1)), x.squeeze(2) + 1, x.squeeze(-1)


def _assert_same(got: object, want: tuple[torch.Tensor, ...]) -> None:
    outputs = got if isinstance(got, (list, tuple)) else (got,)
    assert len(outputs) == len(want)
    for index, (value, expected) in enumerate(zip(outputs, want, strict=True)):
        array = np.asarray(value)
        assert array.shape == tuple(expected.shape), (index, array.shape, expected.shape)
        assert np.array_equal(array, expected.numpy()), index


def test_split_with_empty_parts_gives_empty_tensors_between_the_others() -> None:
    x = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    artifact = graphopt.compile(SplitWithEmptyParts().eval(), x, target="cpu")
    _assert_same(artifact(x.numpy()), SplitWithEmptyParts()(x))


def test_squeeze_removes_only_the_named_dims_of_size_one() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(2, 1, 3)
    artifact = graphopt.compile(SqueezeSome().eval(), x, target="cpu")
    _assert_same(artifact(x.numpy()), SqueezeSome()(x))
