"""A module the tracer keeps whole still reports its FLOPs (counted while it runs)."""

from __future__ import annotations

import torch
from torch import nn

import graphopt
from graphopt.metadata import info


class TinyViT(nn.Module):
    """Patch conv and a standard ``nn.TransformerEncoder``, which capture keeps as one leaf module."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 32, 8, 8)
        layer = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.patch(x).flatten(2).transpose(1, 2))


def test_a_leaf_transformer_encoder_counts_its_matmuls():
    model, x = TinyViT().eval(), torch.randn(1, 3, 32, 32)
    graph = graphopt.capture(model, x)
    encoder = [n for n in graph.module.graph.nodes if n.op == "call_module" and "encoder" in str(n.target)]
    assert len(encoder) == 1, "the encoder is one leaf node (else this test checks nothing)"
    # 2 layers of 16 tokens: q/k/v/out projections 4 * 2*16*32*32, the MLP's two matmuls 2 * 2*16*32*64,
    # attention scores and their mix 2 * 2*16*16*32.
    expected = 2 * (4 * 2 * 16 * 32 * 32 + 2 * 2 * 16 * 32 * 64 + 2 * 2 * 16 * 16 * 32)
    assert info(encoder[0]).flops == expected


def test_the_count_is_not_run_again_when_a_pass_reannotates_the_graph():
    model, x = TinyViT().eval(), torch.randn(1, 3, 32, 32)
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    graph = graphopt.capture(model, x)
    captured = len(calls)  # the capture's own runs, and the count's one
    graph.refresh()  # what every pass does after an edit
    assert len(calls) == captured + 1  # the graph ran once more; the count did not
    encoder = next(n for n in graph.module.graph.nodes if n.op == "call_module" and "encoder" in str(n.target))
    assert info(encoder).flops > 0
