"""Unstructured and 2:4 magnitude pruning: the zeros land where the pattern says, sizes stay, report counts them."""

from __future__ import annotations

import pytest
import torch

from graphopt.errors import InputError
from graphopt.pruning import sparsify
from samples.cnn import DigitsCNN
from samples.resnet import resnet_small

X = torch.randn(1, 1, 28, 28)


def test_unstructured_zeroes_the_smallest_fraction_of_each_layer() -> None:
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    graph, report = sparsify(model, X, sparsity=0.75)
    conv2, original = graph.module.conv2.weight, model.conv2.weight.detach()
    assert conv2.shape == original.shape and (conv2 == 0).float().mean().item() == pytest.approx(0.75, abs=1e-3)
    survivors = original[conv2 != 0].abs()
    assert survivors.min() >= original[conv2 == 0].abs().max()  # the smallest magnitudes went
    assert [x.name for x in report.layers] == ["conv1", "conv2", "fc"] and report.zeros == sum(
        int((getattr(graph.module, n).weight == 0).sum()) for n in ("conv1", "conv2", "fc")
    )
    assert report.compressed_bytes() < report.weights * 4 and "not faster" in report.notes[0]
    assert graph(X).shape == (1, 10)


def test_two_of_four_keeps_the_two_largest_of_every_four_input_channels() -> None:
    graph, report = sparsify(resnet_small(), torch.randn(1, 3, 32, 32), pattern="2:4")
    weight = graph.module.get_submodule("layers.1.conv1").weight  # 16 x 8 x 3 x 3
    runs = weight.movedim(1, -1).reshape(-1, 4)
    assert ((runs != 0).sum(1) == 2).all()
    assert "stem.0" in report.skipped  # 3 input channels do not come in fours
    assert all(x.sparsity == 0.5 for x in report.layers)


def test_bad_sparsity_input_is_refused() -> None:
    with pytest.raises(InputError, match="sparsity must lie strictly between 0 and 1"):
        sparsify(DigitsCNN().eval(), X, sparsity=1.0)
    with pytest.raises(InputError, match="unknown sparsity pattern '1:8'"):
        sparsify(DigitsCNN().eval(), X, pattern="1:8")
