"""BatchNorm statistics re-measured after pruning, and the sensitivity sweep that uses it."""

from __future__ import annotations

import pytest
import torch

import graphopt
from graphopt.errors import InputError
from graphopt.pruning import recalibrate
from samples.cnn import DigitsCNN

X = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_recalibrate_measures_the_statistics_of_the_pruned_layers_outputs() -> None:
    pruned, _ = graphopt.prune(DigitsCNN().eval(), X[:1], ratio=0.5, round_to=1)
    module = pruned.module
    module.bn2.running_mean.fill_(5.0)  # stale: what the unpruned conv2 saw
    recalibrate(module, X, batch_size=16)
    with torch.no_grad():
        inner = module.pool1(module.relu1(module.bn1(module.conv1(X))))
        wanted = module.conv2(inner).mean(dim=(0, 2, 3))
    assert torch.allclose(module.bn2.running_mean, wanted, atol=1e-3)  # float32 running averages of 4 batches
    assert not module.training and module.bn2.momentum == 0.1 and not module.bn2.training


def test_sensitivity_recalibrates_each_candidate_and_leaves_the_model_alone() -> None:
    model = DigitsCNN().eval()
    with torch.no_grad():
        model.bn2.running_mean.fill_(3.0)  # far from what conv2 writes: every candidate is off until re-measured
    before = model.bn2.running_mean.clone()
    graph = graphopt.capture(model, X[:1])
    plain = graphopt.sensitivity(graph, levels=(0.5,), calibration_inputs=X)
    measured = graphopt.sensitivity(graph, levels=(0.5,), calibration_inputs=X, recalibrate=X)
    assert [r.flops for r in plain.rows] == [r.flops for r in measured.rows]
    assert [r.metric for r in plain.rows] != [r.metric for r in measured.rows]
    assert torch.equal(graph.module.bn2.running_mean, before)
    with pytest.raises(InputError, match="recalibration inputs are empty"):
        recalibrate(DigitsCNN(), X[:0])
