"""Negative axes written as positive ones, so ConvertLayout works: attention builds (issue 14).

``nn.MultiheadAttention`` lowers to ``squeeze(x, axis=[-2])``, on which TVM 0.27's ConvertLayout
aborted with ``std::bad_alloc``: every ``nn.TransformerEncoderLayer`` failed to build for cpu.
"""

from __future__ import annotations

import pytest
import torch
import tvm
import tvm_ffi
from torch import nn
from tvm import relax

from graphopt.targets.lowering.positive_axes import PositiveAxes
from tests.targets.conftest import assert_matches_eager, randomize


def _module(axes: dict[str, object]) -> tvm.IRModule:
    """squeeze, softmax, stack, expand_dims, concat, permute_dims and sum on a (2, 1, 3) input."""
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 1, 3), "float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            squeezed = builder.emit(relax.op.squeeze(x, axis=axes["squeeze"]))  # (2, 3)
            soft = builder.emit(relax.op.nn.softmax(squeezed, axis=axes["softmax"]))
            stacked = builder.emit(relax.op.stack([soft, soft], axis=axes["stack"]))  # (2, 3, 2)
            expanded = builder.emit(relax.op.expand_dims(stacked, axis=axes["expand_dims"]))  # (2, 3, 2, 1)
            joined = builder.emit(relax.op.concat([expanded, expanded], axis=axes["concat"]))  # (2, 3, 2, 2)
            permuted = builder.emit(relax.op.permute_dims(joined, axes=axes["permute_dims"]))
            total = builder.emit_output(relax.op.sum(permuted, axis=axes["sum"]))
        builder.emit_func_output(total)
    return builder.get()


def test_negative_axes_become_the_positive_axes_they_mean() -> None:
    before = _module(
        {
            "squeeze": [-2],
            "softmax": -1,
            "stack": -1,
            "expand_dims": [-1],
            "concat": -1,
            "permute_dims": [-1, 0, -3, 2],
            "sum": [-1],
        }
    )
    expected = _module(
        {
            "squeeze": [1],
            "softmax": 1,
            "stack": 2,
            "expand_dims": [3],
            "concat": 3,
            "permute_dims": [3, 0, 1, 2],
            "sum": [3],
        }
    )
    assert not tvm_ffi.structural_equal(before, expected)
    after = PositiveAxes()(before)
    tvm.ir.assert_structural_equal(after, expected)


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize(
    "model",
    [
        SelfAttention(),
        pytest.param(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), marks=pytest.mark.slow),
    ],
    ids=["multihead_attention", "transformer_encoder_layer"],
)
def test_attention_builds_for_cpu_and_matches_eager(compile_cpu, model: nn.Module) -> None:
    torch.manual_seed(0)
    model = randomize(model)
    x = torch.randn(2, 5, 16)
    assert_matches_eager(model, compile_cpu(model, x), x)
