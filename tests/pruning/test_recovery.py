"""``graphopt.pruning.recover``: distillation from the unpruned model with a one-cycle schedule."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import InputError
from graphopt.pruning import recover


def _data(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    return x, y


def _teacher():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    x, y = _data()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def _agreement(a, b, x):
    with torch.no_grad():
        return (a(x).argmax(1) == b(x).argmax(1)).float().mean().item()


def test_recover_brings_a_pruned_model_back_to_its_teacher():
    teacher = _teacher()
    x, y = _data()
    pruned, _ = graphopt.prune(teacher, x[:1], ratio=0.5, round_to=1)
    before = _agreement(pruned.module, teacher, x)
    saved = copy.deepcopy(teacher.state_dict())
    losses = recover(pruned.module, teacher, (x, y), epochs=8, lr=1e-2, batch_size=32)
    after = _agreement(pruned.module, teacher, x)
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert after > before and after >= 0.9, (before, after)
    assert not pruned.module.training
    assert all(torch.equal(v, saved[k]) for k, v in teacher.state_dict().items())  # teacher untouched


def test_recover_schedule_ends_near_zero_and_accepts_batches():
    teacher = _teacher()
    x, y = _data(64)
    student = copy.deepcopy(teacher)
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = spy  # type: ignore[method-assign]
    try:
        recover(student, teacher, [(x[:32], y[:32]), (x[32:], y[32:])], epochs=2, lr=1e-2, alpha=0.0)
    finally:
        torch.optim.Adam.step = original  # type: ignore[method-assign]
    assert len(seen) == 4 and max(seen) == pytest.approx(1e-2, rel=0.05) and seen[-1] < 1e-3


def test_recover_bad_arguments_are_one_line_errors():
    teacher = _teacher()
    x, y = _data(16)
    with pytest.raises(InputError, match="alpha in"):
        recover(copy.deepcopy(teacher), teacher, (x, y), alpha=2.0)
    with pytest.raises(InputError, match="epochs"):
        recover(copy.deepcopy(teacher), teacher, (x, y), epochs=-1)
