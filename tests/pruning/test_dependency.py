"""Dependency groups: which channels go together, pinned on small models; and pruned == masked.

The exactness property: for random CNNs (hypothesis) and for each coupling pattern, removing the
chosen channels physically gives the same outputs, to 1e-5 relative, as the original graph with
the weight columns that read those channels zeroed. A slicing bug (a wrong index, a missed
consumer, a depthwise group left behind) changes the outputs or fails to run.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import graphopt
from graphopt.capture import capture
from graphopt.errors import InputError
from graphopt.pruning import analyze, groups
from samples.cnn import DigitsCNN
from samples.mobilenet import mobilenet_small
from samples.pruning_patterns import DenseBlock, ResNeXtBlock, ShuffleBlock
from samples.resnet import resnet_small
from samples.transformer import transformer_encoder
from tests.passes.test_o2_property import LAYERS as O2_LAYERS
from tests.passes.test_o2_property import RandomNet
from tests.pruning.models import BLOCKS, HEADS, RandomCNN, assert_exact, shrunk_and_masked


def described(model: nn.Module, *shape: int) -> list[str]:
    return [g.describe() for g in groups(capture(model, torch.randn(*shape)))]


def test_digits_cnn_has_one_group_per_conv_and_the_flatten_feeds_the_classifier() -> None:
    assert described(DigitsCNN().eval(), 1, 1, 28, 28) == [
        "group 0: 16 channels; out of conv1, bn1; into conv2",
        "group 1: 32 channels; out of conv2, bn2; into fc",
    ]


def test_residual_stream_is_one_group_across_the_stage() -> None:
    found = described(resnet_small(), 1, 3, 32, 32)
    assert found[0] == (
        "group 0: 8 channels; out of stem.0, stem.1, layers.0.conv2, layers.0.bn2; "
        "into layers.0.conv1, layers.1.conv1, layers.1.downsample.0"
    )
    assert found[-1].startswith("group 7: 64 channels; out of layers.3.conv2, layers.3.bn2, layers.3.downsample.0")
    assert found[-1].endswith("into fc")


def test_a_transformer_prunes_whole_heads_and_its_mlp_hidden_width() -> None:
    # heads: q/k/v rows and out columns through reshape, transpose, matmul, softmax; the LayerNorm'd stream stays
    assert described(transformer_encoder(d_model=16, nhead=2, num_layers=2), 1, 4, 16) == [
        "group 0: 2 heads; out of layers.0.attention.query, layers.0.attention.key, layers.0.attention.value; "
        "into layers.0.attention.out",
        "group 1: 64 channels; out of layers.0.ff1; into layers.0.ff2",
        "group 2: 2 heads; out of layers.1.attention.query, layers.1.attention.key, layers.1.attention.value; "
        "into layers.1.attention.out",
        "group 3: 64 channels; out of layers.1.ff1; into layers.1.ff2",
    ]


def test_channel_shuffle_ties_every_block_and_permutes_the_channels() -> None:
    found = groups(capture(ShuffleBlock().eval(), torch.randn(1, 3, 8, 8)))
    # g1 (4 groups) -> shuffle of 4 blocks -> depthwise -> g2 (4 groups): 32 channels in 2 units of 16
    assert [(g.size, g.unit_width) for g in found] == [(8, 4), (2, 16), (8, 4)]
    assert found[1].layers == [("g1", "out"), ("dw", "in"), ("dw", "out"), ("g2", "in")]


def test_depthwise_conv_joins_the_group_of_its_input() -> None:
    found = described(mobilenet_small(), 1, 3, 32, 32)
    expand = next(g for g in found if "features.2.block.0.0" in g.split(";")[1])
    assert "features.2.block.1.0" in expand.split(";")[1]  # the depthwise conv's outputs go with its inputs


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 1)
        self.fuse = nn.Conv2d(10, 5, 1)
        self.fc = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fuse(torch.cat([self.a(x), self.b(x)], 1)).mean((2, 3)))


def test_concat_branches_are_separate_groups_feeding_one_consumer() -> None:
    assert described(Concat().eval(), 1, 3, 4, 4) == [
        "group 0: 4 channels; out of a; into fuse",
        "group 1: 6 channels; out of b; into fuse",
        "group 2: 5 channels; out of fuse; into fc",
    ]


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(3, 8, 1)
        self.grouped = nn.Conv2d(8, 6, 3, padding=1, groups=2)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.grouped(self.expand(x)).mean((2, 3)))


def test_grouped_conv_couples_the_same_position_of_every_group() -> None:
    found = groups(capture(Grouped().eval(), torch.randn(1, 3, 4, 4)))
    assert [(g.size, g.unit_width) for g in found] == [(4, 2), (3, 2)]  # 8 inputs as 4 pairs, 6 outputs as 3


def test_channels_reaching_an_output_or_an_unknown_op_are_not_prunable() -> None:
    class Softmaxed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.softmax(self.conv(x), dim=1))  # softmax mixes channels

    assert groups(capture(Softmaxed().eval(), torch.randn(1, 3, 2, 2))) == []
    analysis = analyze(capture(Softmaxed().eval(), torch.randn(1, 3, 2, 2)))
    assert "read by softmax (softmax)" in set(analysis.why_fixed.values())


def test_ignore_keeps_a_layer_and_rejects_unknown_names() -> None:
    graph = capture(DigitsCNN().eval(), torch.randn(1, 1, 28, 28))
    assert [g.describe().split(";")[1] for g in groups(graph, ignore=["conv1"])] == [" out of conv2, bn2"]
    with pytest.raises(InputError, match="ignored layer 'conv9' is not in the graph"):
        groups(graph, ignore=["conv9"])


@pytest.mark.parametrize(
    "model, shape",
    [
        (DigitsCNN().eval(), (2, 1, 28, 28)),
        (resnet_small(), (2, 3, 32, 32)),
        (mobilenet_small(), (2, 3, 32, 32)),
        (Concat().eval(), (2, 3, 4, 4)),
        (Grouped().eval(), (2, 3, 4, 4)),
        (transformer_encoder(d_model=16, nhead=4, num_layers=1), (2, 4, 16)),
        (ShuffleBlock().eval(), (2, 3, 8, 8)),
        (DenseBlock().eval(), (2, 3, 8, 8)),
        (ResNeXtBlock().eval(), (2, 3, 8, 8)),
    ],
    ids=[
        "flatten_linear",
        "residual",
        "depthwise",
        "concat",
        "grouped",
        "transformer_heads_mlp",
        "shuffle",
        "dense",
        "resnext",
    ],
)
def test_shrunk_equals_masked_on_each_pattern(model: nn.Module, shape: tuple[int, ...]) -> None:
    before = capture(model, torch.randn(*shape)).stats()
    shrunk = assert_exact(model, torch.randn(*shape))
    after = shrunk.stats()
    assert after.params < before.params and after.flops < before.flops


class DepthwiseBlock(nn.Module):
    """Expand, BN, depthwise (x2 multiplier), BN, residual-free head: the aten spelling's groups argument."""

    def __init__(self) -> None:
        super().__init__()
        self.expand, self.bn1 = nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6)
        self.depthwise, self.bn2 = nn.Conv2d(6, 12, 3, padding=1, groups=6), nn.BatchNorm2d(12)
        self.fc = nn.Linear(12 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn2(self.depthwise(torch.relu(self.bn1(self.expand(x))))))
        return self.fc(torch.flatten(h, 1))


def test_shrunk_equals_masked_for_a_torch_export_capture() -> None:
    x = torch.randn(2, 3, 4, 4)
    graph = capture(DepthwiseBlock().eval(), x, method="export")
    assert graph.capture_method == "export"
    found = analyze(graph.copy()).groups
    assert [g.size for g in found] == [6]  # expand's channels own the depthwise groups and the fc columns
    shrunk, masked = shrunk_and_masked(graph, {0: 0.5})
    assert shrunk.stats().params < masked.stats().params
    assert graphopt.numerics.relative_error(masked(x), shrunk(x)) <= 1e-5


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(
    blocks=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=6),
    widths=st.lists(st.integers(2, 6), min_size=6, max_size=6),
    head=st.sampled_from(HEADS),
    seed=st.integers(0, 2**16),
    ratio=st.floats(0.1, 0.9),
    importance=st.sampled_from(["l1", "l2", "bn_scale", "random"]),
)
def test_shrunk_equals_masked_on_random_cnns(
    blocks: list[str], widths: list[int], head: str, seed: int, ratio: float, importance: str
) -> None:
    model = RandomCNN(blocks, widths[: len(blocks)], head, seed).eval()
    x = torch.randn(2, 3, 8, 8)
    graph = capture(model, x)
    found = analyze(graph.copy()).groups
    assert found, "the head's input channels are always prunable"
    ratios = {g.index: ratio * ((g.index % 3) + 1) / 3 for g in found}  # a different ratio per group
    shrunk, masked = shrunk_and_masked(graph, ratios, importance, seed)
    fresh = torch.randn_like(x)
    assert graphopt.numerics.relative_error(masked(fresh), shrunk(fresh)) <= 1e-5
    assert shrunk.stats().params <= graph.stats().params


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(layers=st.lists(st.sampled_from(O2_LAYERS), min_size=1, max_size=6), seed=st.integers(0, 99))
def test_shrunk_equals_masked_on_the_o2_random_models(layers: list[str], seed: int) -> None:
    assert_exact(RandomNet(layers, seed).eval(), torch.randn(2, 4, 4, 4))


def test_size_queries_do_not_pin_channels() -> None:
    class ViewFlatten(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6 * 2 * 2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x)
            return self.fc(h.view(h.size(0), -1) + 0 * h.shape[1])

    found = described(ViewFlatten().eval(), 1, 3, 4, 4)
    assert found == ["group 0: 6 channels; out of conv; into fc"]
    assert_exact(ViewFlatten().eval(), torch.randn(2, 3, 4, 4))
