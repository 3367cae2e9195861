"""Property: O2 with verify keeps random small models equal to eager within 1e-5 relative (float32).

hypothesis draws a sequence of layers (Conv2d with or without bias or with pruned channels, BatchNorm, ReLU, residual add,
reshape round trips, transposes, channel shuffles (view -> transpose -> contiguous -> view), concatenation, no-ops,
unused branches with their own weights)
plus a weight seed and a capture method; every case must pass O2's per-pass verification and match
the eager model on a fresh input.
"""

from __future__ import annotations

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from graphopt.capture import capture
from graphopt.pass_manager import optimize
from tests.passes.models import FLOAT_TOLERANCE, assert_matches_eager, kinds, randomized_bn

CHANNELS, SIZE = 4, 4
LAYERS = [
    "conv",
    "conv_nobias",
    "pruned_conv",
    "bn",
    "relu",
    "add",
    "reshape",
    "transpose",
    "shuffle",
    "concat",
    "noop",
    "dropout",
    "unused",
]


class RandomNet(nn.Module):
    """Applies ``layers`` to an N x 4 x 4 x 4 input, then pools into a Linear-BN-ReLU-Linear head."""

    def __init__(self, layers: list[str], seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layers = layers
        self.blocks = nn.ModuleList()
        for layer in layers:
            if layer in ("conv", "conv_nobias", "pruned_conv"):
                block: nn.Module = nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, bias=layer != "conv_nobias")
                if layer == "pruned_conv":
                    with torch.no_grad():
                        block.weight[: seed % 3 + 1] = 0  # channels left constant (their bias) by pruning
            elif layer == "bn":
                block = randomized_bn(CHANNELS)
            elif layer == "concat":
                block = nn.Conv2d(2 * CHANNELS, CHANNELS, 1)
            elif layer == "unused":
                block = nn.Linear(SIZE, 7)
            elif layer == "dropout":
                block = nn.Dropout(0.3)
            else:
                block = nn.Identity()
            self.blocks.append(block)
        self.head = nn.Sequential(nn.Linear(CHANNELS, 6), randomized_bn(6, dims=1), nn.ReLU(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, saved = x, x
        for layer, block in zip(self.layers, self.blocks, strict=True):
            if layer == "relu":
                h = torch.relu(h)
            elif layer == "add":
                h, saved = h + saved, h
            elif layer == "reshape":
                h = h.reshape(h.shape[0], CHANNELS, SIZE * SIZE).reshape(-1, CHANNELS, SIZE, SIZE)
            elif layer == "transpose":
                h = h.transpose(2, 3)
            elif layer == "shuffle":
                h = h.view(-1, 2, CHANNELS // 2, SIZE, SIZE).transpose(1, 2).contiguous().view(-1, CHANNELS, SIZE, SIZE)
            elif layer == "concat":
                h = block(torch.cat([h, saved], dim=1))
            elif layer == "noop":
                h = torch.cat([h * 1 + 0], dim=1).transpose(1, 2).transpose(1, 2).contiguous()
            elif layer == "unused":
                _ = torch.sigmoid(block(h))  # a branch nothing reads, with weights of its own
            else:
                h = block(h)
        return self.head(h.mean((2, 3)))


@settings(max_examples=12, deadline=None)  # ~5 s each (torch.export); fresh draws every run
@example(layers=["transpose", "shuffle", "relu"], seed=0, method="symbolic_trace")  # issue 14's channel shuffle
@given(
    layers=st.lists(st.sampled_from(LAYERS), min_size=1, max_size=7),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(["symbolic_trace", "symbolic_trace", "export"]),
)
def test_o2_matches_eager_on_random_models(layers: list[str], seed: int, method: str) -> None:
    model = RandomNet(layers, seed).eval()
    graph = capture(model, torch.randn(2, CHANNELS, SIZE, SIZE), method=method)
    optimized, report = optimize(graph, "O2", verify=True, tolerance=FLOAT_TOLERANCE)
    assert all(p.max_error is not None and p.max_error <= FLOAT_TOLERANCE for p in report.passes)
    assert_matches_eager(model, optimized, 3, CHANNELS, SIZE, SIZE, tolerance=FLOAT_TOLERANCE, seed=seed)
    assert not {"batch_norm", "dropout", "identity", "sigmoid"} & set(kinds(optimized))
    assert "unused" not in layers or not any(isinstance(m, nn.Linear) for m in optimized.module.modules())
