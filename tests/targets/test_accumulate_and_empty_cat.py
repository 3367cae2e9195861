"""Two patterns of Hugging Face models (issue 15, found on GPT-2), here without transformers.

- A running sum of a bool mask (``(ids != 0).cumsum(-1)``, transformers' packed-sequence check) is an int64
  count in torch; relax kept it bool and the LLVM backend refused to add bools. At the default opt level a
  mask of constants is folded away, so the models here take the mask from an input, and build at ``O0``.
- ``torch.cat([torch.tensor([]), x], dim=-2)``, a key/value cache's first update: torch skips the empty
  1-d tensor, relax's ``concat`` refused inputs of different ranks.

Integer results are compared exactly (they are counts); float ones too, each being one correctly rounded
float32 product or a copy of the input. A lowering that keeps bool where torch counts is named in one line
before TVM's backend fails without saying where.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import fx, nn

import graphopt
from graphopt.errors import UnsupportedOpError
from graphopt.targets.lowering import lower


class MaskCounts(nn.Module):
    """Running counts and products of bool and int32 tensors, used in float arithmetic as models do."""

    def forward(
        self, ids: torch.Tensor, x: torch.Tensor, big: torch.Tensor, small: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        mask = ids != 0
        counts = mask.cumsum(-1)
        return (
            counts,
            x * counts,  # float32 * int64: the float op on the integer count that failed to build
            mask.cumprod(-1),
            big.cumsum(0),  # int32 -> int64: 3 * 2^30 does not fit an int32
            small.prod(),  # int32 -> int64: 2^33
        )


def _ids() -> torch.Tensor:
    ids = torch.randint(1, 9, (2, 8), generator=torch.Generator().manual_seed(0))
    ids[1, 5:] = 0  # padding
    return ids


@pytest.mark.parametrize("passes", ["O0", "O2"])
def test_running_sums_of_bool_and_int32_are_int64_like_torch(passes: str) -> None:
    ids, x = _ids(), torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    big, small = torch.full((3,), 2**30, dtype=torch.int32), torch.full((3,), 2**11, dtype=torch.int32)
    model = MaskCounts().eval()
    compiled = graphopt.compile(model, (ids, x, big, small), target="cpu", passes=passes)
    got = compiled(ids.numpy(), x.numpy(), big.numpy(), small.numpy())
    for index, (value, want) in enumerate(zip(got, model(ids, x, big, small), strict=True)):
        assert np.asarray(value).dtype == want.numpy().dtype, index
        assert np.array_equal(np.asarray(value), want.numpy()), index


class GrowingCache(nn.Module):
    """A cache that starts as ``torch.tensor([])`` and grows along dim -2, as transformers' DynamicLayer."""

    def forward(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cache = torch.tensor([], dtype=keys.dtype)
        cache = torch.cat([cache, keys], dim=-2)
        nothing = keys[:, :, :0]  # same rank, zero along the cat dimension
        return cache * 2, torch.cat([nothing, keys, nothing, keys.half()], dim=2)


@pytest.mark.parametrize("passes", ["O0", "O2"])
def test_cat_leaves_out_empty_inputs_as_torch_does(passes: str) -> None:
    keys = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(2))
    model = GrowingCache().eval()
    compiled = graphopt.compile(model, (keys,), target="cpu", passes=passes)
    for index, (value, want) in enumerate(zip(compiled(keys.numpy()), model(keys), strict=True)):
        assert np.asarray(value).dtype == want.numpy().dtype, index
        assert np.array_equal(np.asarray(value), want.numpy()), index


def _bool_cumsum(node: fx.Node, importer: Any) -> Any:
    """TVM's frontend's lowering before this fix: a cumsum in the input's dtype, bool for a mask."""
    from tvm import relax

    return importer.block_builder.emit(relax.op.cumsum(importer.env[node.args[0]], int(str(node.args[1]))))


def test_a_node_lowered_as_bool_where_torch_counts_is_named_in_one_line(monkeypatch) -> None:
    monkeypatch.setitem(lower.CUSTOM_CONVERTERS, "cumsum.default", _bool_cumsum)
    ids, x = _ids(), torch.randn(2, 8)
    small = torch.ones(3, dtype=torch.int32)
    with pytest.raises(UnsupportedOpError) as error:
        graphopt.compile(MaskCounts().eval(), (ids, x, small, small), target="cpu", passes="O0")
    message = str(error.value)
    assert "\n" not in message
    assert "aten.cumsum.default (lowered as bool where torch computes int64) at node 'cumsum'" in message
    assert "test_accumulate_and_empty_cat.py:" in message  # the user's line: mask.cumsum(-1)
