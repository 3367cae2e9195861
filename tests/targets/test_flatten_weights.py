"""FlattenIntoWeights: a flatten after NHWC convolutions reads the activation in place, the classifier's
weight rows permuted once at compile time, with the model's outputs unchanged."""

from __future__ import annotations

import pytest
import torch
import tvm
from torch import nn

import graphopt
from graphopt.targets.cpu import schedule
from graphopt.targets.cpu.flatten_weights import FlattenIntoWeights
from graphopt.targets.lowering.lower import lower_to_relax
from tests.targets.conftest import assert_matches_eager, digits_like, randomize


class FlattenClassifier(nn.Module):
    """Two convs, a pool, ``flatten`` and a linear head: the classic CNN classifier (LeNet, VGG)."""

    def __init__(self, keep_features: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1)
        )
        self.head = nn.Linear(16 * 14 * 14, 10)
        self.keep_features = keep_features

    def forward(self, x):
        flat = torch.flatten(self.features(x), 1)
        logits = self.head(flat)
        return (logits, flat) if self.keep_features else logits


def _flattens_of_nchw(model: nn.Module, x: torch.Tensor, rewrite: bool) -> int:
    """How many reshapes read an NHWC -> NCHW ``permute_dims`` after layout conversion (and the rewrite)."""
    mod, _ = lower_to_relax(graphopt.capture(model, x))
    passes = [tvm.relax.transform.ConvertLayout(schedule.NHWC_LAYOUTS), tvm.relax.transform.Normalize()]
    passes += [FlattenIntoWeights()] if rewrite else []
    mod = tvm.transform.Sequential([*passes, tvm.relax.transform.DeadCodeElimination()])(mod)
    values = {b.var: b.value for block in mod["main"].body.blocks for b in block.bindings}

    def is_to_nchw(expr) -> bool:
        value = values.get(expr)
        return getattr(getattr(value, "op", None), "name", "") == "relax.permute_dims" and [
            int(a) for a in value.attrs.axes
        ] == [0, 3, 1, 2]

    return sum(
        getattr(value.op, "name", "") == "relax.reshape" and is_to_nchw(value.args[0])
        for value in values.values()
        if isinstance(value, tvm.relax.Call)
    )


def test_the_transpose_before_the_classifier_is_gone():
    model = randomize(FlattenClassifier())
    x = digits_like(2)
    # ConvertLayout puts a transpose back before the flatten; the rewrite removes it.
    assert _flattens_of_nchw(model, x, rewrite=False) == 1
    assert _flattens_of_nchw(model, x, rewrite=True) == 0


@pytest.mark.parametrize("batch", [1, 3])
def test_permuted_weights_compute_the_same_logits(compile_cpu, batch):
    model = randomize(FlattenClassifier())
    x = digits_like(batch)
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_a_flatten_read_twice_keeps_its_transpose(compile_cpu):
    """The flattened features are also an output, in NCHW order: the reshape must stay as it was."""
    model = randomize(FlattenClassifier(keep_features=True))
    x = digits_like(2)
    assert _flattens_of_nchw(model, x, rewrite=True) == 1
    assert_matches_eager(model, compile_cpu(model, x), x)


def test_an_ensemble_flattening_into_groups_matches_the_mean():
    """A horizontally fused ensemble reshapes (N, 4*C, H, W) into (N, 4, C*H*W) for its batched heads."""
    members = [randomize(FlattenClassifier(), seed=s) for s in range(4)]
    x = digits_like(2)
    graph, _ = graphopt.fuse_models(members, x, combine="mean", horizontal=True)
    compiled = graphopt.compile(graph, graph.example_inputs, target="cpu")
    with torch.no_grad():
        want = torch.stack([m(x) for m in members]).mean(0)
    got = torch.as_tensor(compiled(x.numpy()))
    # 1e-5 relative, the targets' float32 bound (tests/targets/conftest.py): only the sum's order changed.
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5
