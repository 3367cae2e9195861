"""A model whose output holds an object that is not a tensor is refused in one line naming that output.

torch.export's own error is a paragraph about pytrees; a Hugging Face model at its default ``use_cache=True``
returns its key/value cache as such an object (tests/targets/test_hf_gpt2.py), and the hint says so.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import CaptureError
from graphopt.output_types import non_tensor_output


class KVCache:
    """Stands for transformers' DynamicCache: a plain object holding tensors."""

    def __init__(self, keys: torch.Tensor) -> None:
        self.keys = keys


class Holder:
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


class ReturnsObject(nn.Module):
    def __init__(self, wrap: type) -> None:
        super().__init__()
        self.wrap = wrap

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        if x.shape[0] > 1:  # shape-dependent control flow: symbolic_trace fails, torch.export is tried
            x = x * 2
        return {"hidden": x + 1, "extra": self.wrap(x)}


def test_the_first_non_tensor_leaf_is_found_by_its_path() -> None:
    holder = Holder(torch.zeros(1))
    assert non_tensor_output((torch.zeros(1), {"a": 3, "b": [None, holder]})) == ("[1]['b'][1]", holder)
    assert non_tensor_output({"a": torch.zeros(1), "b": (1.5, "text")}) is None


def test_a_cache_output_is_refused_with_the_use_cache_hint() -> None:
    with pytest.raises(CaptureError) as error:
        graphopt.capture(ReturnsObject(KVCache).eval(), torch.randn(2, 3))
    message = str(error.value)
    assert "\n" not in message
    assert "cannot capture ReturnsObject: its output ['extra'] is a " in message
    assert "KVCache, not a tensor" in message and "use_cache=False" in message


def test_another_object_output_is_refused_with_a_wrapping_hint() -> None:
    with pytest.raises(CaptureError, match=r"output \['extra'\] is a .*Holder, not a tensor.*returns only tensors"):
        graphopt.capture(ReturnsObject(Holder).eval(), torch.randn(2, 3))
