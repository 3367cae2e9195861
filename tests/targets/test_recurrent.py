"""Recurrent layers (RNN, GRU, LSTM) compile for cpu and match eager, with the usual "last step" read.

Issue 14: ``nn.GRU`` / ``nn.LSTM`` built but were off by 1e31 or infinite, because ``out[:, -1]`` and
``h[-1]`` read before the tensor (targets/lowering/safe_indices.py). Each case returns the whole
output sequence, the last step through a negative index and the last layer's final state, so a wrong
time-step order, a wrong direction or a wrong state shows. Tiny sizes (3 steps, width 6) keep each
build a few seconds; the three configurations together cover one and two layers, one and two
directions and both ``batch_first`` layouts (all 24 combinations matched when this was written; three
keep the suite's time down).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.targets.conftest import assert_matches_eager


class LastStep(nn.Module):
    def __init__(self, kind: str, layers: int, bidirectional: bool, batch_first: bool) -> None:
        super().__init__()
        self.rnn = getattr(nn, kind)(5, 6, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, state = self.rnn(x)
        last = out[:, -1] if self.batch_first else out[-1]
        hidden = state[0] if type(self.rnn) is nn.LSTM else state
        return out, last * 2, hidden[-1], state[1][-1] if type(self.rnn) is nn.LSTM else hidden[0]


CASES = [
    ("GRU", 1, False, True),  # the nn.GRU(16, 32, batch_first=True), smaller
    pytest.param("LSTM", 2, True, True, marks=pytest.mark.slow),
    pytest.param("RNN", 2, True, False, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("kind", "layers", "bidirectional", "batch_first"), CASES)
def test_recurrent_layer_matches_eager(
    compile_cpu, kind: str, layers: int, bidirectional: bool, batch_first: bool
) -> None:
    torch.manual_seed(0)
    model = LastStep(kind, layers, bidirectional, batch_first).eval()
    x = torch.randn(2, 3, 5)
    compiled = compile_cpu(model, x)
    assert_matches_eager(model, compiled, x)
    assert_matches_eager(model, compiled, torch.randn(2, 3, 5) * 3)
