"""Small models with every coupling pruning must follow, and the exactness check they share.

``RandomCNN`` applies a stem conv and a list of blocks to an ``N x 3 x 8 x 8`` input, each block changing the
channel count its own way (plain conv, conv-BN-ReLU, residual, concat of two branches, depthwise
with multiplier, grouped conv, chunk-and-gate, split into unequal parts, squeeze-excite, max-pool), then a head (flatten of
C x H x W into a Linear, global average pool, or a spatial mean).
"""

from __future__ import annotations

import torch
from torch import nn

from graphopt.capture import capture
from graphopt.ir import Graph
from graphopt.numerics import relative_error
from graphopt.pruning import analyze, mask, scores, select, shrink
from tests.passes.models import randomized_bn

BLOCKS = ["conv", "conv_bn_relu", "residual", "concat", "depthwise", "grouped", "chunk", "split", "se", "pool"]
HEADS = ["flatten_linear", "pool_linear", "mean_linear"]


class RandomCNN(nn.Module):
    def __init__(self, blocks: list[str], widths: list[int], head: str, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.kinds, self.head_kind = blocks, head
        self.blocks = nn.ModuleList()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)  # the image's channels are not prunable: start from a conv
        channels, size = 4, 8
        for kind, width in zip(blocks, widths, strict=True):
            block: nn.Module
            if kind == "conv":
                block, channels = nn.Conv2d(channels, width, 3, padding=1), width
            elif kind == "conv_bn_relu":
                block = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), randomized_bn(width))
                channels = width
            elif kind == "residual":
                block = nn.ModuleList(
                    [nn.Conv2d(channels, width, 3, padding=1), randomized_bn(width), nn.Conv2d(width, channels, 1)]
                )
            elif kind == "concat":
                block = nn.ModuleList([nn.Conv2d(channels, width, 1), nn.Conv2d(channels, width + 1, 3, padding=1)])
                channels = 2 * width + 1
            elif kind == "depthwise":
                multiplier = 1 + width % 2
                block = nn.Sequential(
                    nn.Conv2d(channels, channels * multiplier, 3, padding=1, groups=channels),
                    randomized_bn(channels * multiplier),
                )
                channels *= multiplier
            elif kind == "grouped":
                groups = 2
                block = nn.Sequential(
                    nn.Conv2d(channels, groups * width, 1),
                    nn.Conv2d(groups * width, groups * 3, 3, padding=1, groups=2),
                )
                channels = groups * 3
            elif kind == "chunk":
                block, channels = nn.Conv2d(channels, 2 * width, 1), width
            elif kind == "split":  # unequal parts: [width, width + 2] -> two convs -> cat
                block = nn.ModuleList(
                    [nn.Conv2d(channels, 2 * width + 2, 1), nn.Conv2d(width, 3, 1), nn.Conv2d(width + 2, 3, 1)]
                )
                channels = 6
            elif kind == "se":
                block = nn.Sequential(nn.Conv2d(channels, width, 1), nn.ReLU(), nn.Conv2d(width, channels, 1))
            else:  # pool
                block = nn.MaxPool2d(2) if size >= 4 else nn.Identity()
                size = size // 2 if size >= 4 else size
            self.blocks.append(block)
        head_inputs = channels * size * size if head == "flatten_linear" else channels
        self.head = nn.Linear(head_inputs, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for kind, block in zip(self.kinds, self.blocks, strict=True):
            if kind == "conv_bn_relu":
                h = torch.relu(block(h))
            elif kind == "residual":
                conv, bn, project = block  # type: ignore[misc]
                h = h + project(torch.relu(bn(conv(h))))
            elif kind == "concat":
                first, second = block  # type: ignore[misc]
                h = torch.cat([first(h), torch.relu(second(h))], dim=1)
            elif kind == "chunk":
                value, gate = block(h).chunk(2, dim=1)
                h = value * torch.sigmoid(gate)
            elif kind == "split":
                widen, left, right = block  # type: ignore[misc]
                width = left.in_channels
                a, b = torch.split(widen(h), [width, width + 2], dim=1)
                h = torch.cat([left(a), right(torch.relu(b))], dim=1)
            elif kind == "se":
                h = h * torch.sigmoid(block(h.mean((2, 3), keepdim=True)))
            else:
                h = block(h)
        if self.head_kind == "flatten_linear":
            return self.head(torch.flatten(h, 1))
        if self.head_kind == "pool_linear":
            return self.head(nn.functional.adaptive_avg_pool2d(h, 1).flatten(1))
        return self.head(h.mean((2, 3)))


#: Shrunk vs masked, float32: the same sums with exact zeros dropped; kernels for the two shapes
#: may order the remaining terms differently, which moves results by a few ulps of the largest value.
EXACT = 1e-5


def shrunk_and_masked(
    graph: Graph, ratios: dict[int, float], importance: str = "l1", seed: int = 0
) -> tuple[Graph, Graph]:
    """``graph`` pruned physically and, separately, with the same channels masked."""
    shrunk = graph.copy()
    analysis = analyze(shrunk)
    removed = select(analysis, scores(analysis, importance, seed=seed), ratios, 1)
    shrink(analysis, removed)
    masked = graph.copy()
    mask(analyze(masked), removed)
    return shrunk, masked


def assert_exact(model: nn.Module, x: torch.Tensor, ratios: dict[int, float] | None = None, **kwargs: object) -> Graph:
    """Pruned (shrunk) equals masked to ``EXACT`` on a fresh input; returns the shrunk graph."""
    graph = capture(model, x)
    groups = analyze(graph.copy()).groups
    shrunk, masked = shrunk_and_masked(graph, ratios or {g.index: 0.5 for g in groups}, **kwargs)  # type: ignore[arg-type]
    fresh = torch.randn_like(x)
    error = relative_error(masked(fresh), shrunk(fresh))
    assert error <= EXACT, f"shrunk differs from masked by {error:.3g} relative"
    return shrunk
