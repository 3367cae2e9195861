"""Hugging Face GPT-2 as users bring it (issue 15): built from a ``GPT2Config`` with random weights.

- At ``O0`` (no graphopt passes) it failed to build: the causal-mask code's ``cumsum`` of a bool mask reached
  the LLVM backend as bool arithmetic (``accumulate_dtypes``); the default passes had folded it away.
- With the default ``use_cache=True`` it failed on the ``cat`` of the key/value cache with its empty start
  (``empty_cat``). The cache itself is a ``DynamicCache`` object, which a compiled model cannot return: a
  model returning it is refused in one line that says to pass ``use_cache=False``.

Tolerance: 1e-5 absolute on ``last_hidden_state``, the output of a LayerNorm (values of order 1, here at most
about 5). float32 rounds at 6e-8 relative; two layers of width 16 (dot products of at most 64 terms, a
softmax over 8 positions, GELU's tanh) accumulate a few hundred roundings summed in another order than
PyTorch's, about 1e-6; a wrong mask (a padded position attended to) or a wrong dtype is off by 1e-2 or more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import CaptureError
from samples.corpus.hf import _hide_broken_torchvision
from tests.targets.conftest import randomize

_hide_broken_torchvision()
transformers = pytest.importorskip("transformers")

ATOL = 1e-5


class LastHidden(nn.Module):
    """``GPT2Model(input_ids, attention_mask).last_hidden_state``, as benchmarks/third_party_models.py wraps it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def tiny_gpt2(**config: object) -> nn.Module:
    torch.manual_seed(15)
    gpt2 = transformers.GPT2Config(
        vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, attn_implementation="eager", **config
    )
    return randomize(transformers.GPT2Model(gpt2), seed=15).eval()


def text() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(15))
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 5:] = 0  # the second sequence is padded
    return ids, mask


def assert_close_to_eager(model: nn.Module, passes: str) -> None:
    ids, mask = text()
    compiled = graphopt.compile(model, (ids, mask), target="cpu", passes=passes)
    with torch.no_grad():
        want = model(ids, mask).numpy()
    got = np.asarray(compiled(ids.numpy(), mask.numpy()))
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= ATOL


def test_gpt2_without_cache_builds_at_o0_and_matches_eager() -> None:
    assert_close_to_eager(LastHidden(tiny_gpt2(use_cache=False)).eval(), "O0")


@pytest.mark.parametrize("passes", ["O0", "O2"])
def test_gpt2_with_the_default_cache_builds_and_matches_eager(passes: str) -> None:
    model = tiny_gpt2()
    assert model.config.use_cache  # transformers' default
    assert_close_to_eager(LastHidden(model).eval(), passes)


def test_returning_the_cache_object_is_refused_in_one_line_naming_use_cache() -> None:
    ids, _ = text()
    with pytest.raises(CaptureError) as error:
        graphopt.capture(tiny_gpt2(), ids)
    message = str(error.value)
    assert "\n" not in message
    assert "DynamicCache, not a tensor" in message
    assert "use_cache=False" in message
