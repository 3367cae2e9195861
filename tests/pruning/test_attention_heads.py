"""Attention-head pruning on the project's encoder (samples/transformer.py, symbolic_trace spelling).

A head is ``head_dim`` rows of q, k and v and as many columns of ``out``; removing it must leave
the other heads computing exactly what they did. The check that proves it: silence a head (zero
its weights, so its importance is zero and it adds nothing), prune half the heads, and the output
equals the unpruned model's. The same on Hugging Face BERT is in test_transformers.py.
"""

from __future__ import annotations

import torch
from torch import nn

import graphopt
from graphopt.numerics import relative_error
from graphopt.pruning import analyze, scores, select, shrink
from samples.transformer import transformer_encoder
from tests.pruning.models import EXACT

X = torch.randn(2, 5, 16)


def silence_head(projections: list[nn.Linear], out: nn.Linear, *, head: int, width: int) -> None:
    """Zero head ``head``'s rows (and biases) of ``projections`` and its columns of ``out``."""
    rows = slice(head * width, (head + 1) * width)
    with torch.no_grad():
        for projection in projections:
            projection.weight[rows] = 0
            projection.bias[rows] = 0
        out.weight[:, rows] = 0


def prune_heads_only(graph: graphopt.Graph, ratio: float) -> graphopt.Graph:
    """``graph``'s head groups pruned at ``ratio`` by l1 (every other group kept), physically."""
    pruned = graph.copy()
    analysis = analyze(pruned)
    ratios = {g.index: ratio for g in analysis.groups if g.unit == "heads"}
    assert ratios, "no head group found"
    return shrink(analysis, select(analysis, scores(analysis, "l1"), ratios, 1))


def test_removing_silent_heads_leaves_the_output_unchanged_and_the_model_smaller() -> None:
    model = transformer_encoder(d_model=16, nhead=4, num_layers=2)
    for layer in model.layers:
        attention = layer.attention
        for head in (0, 2):
            silence_head([attention.query, attention.key, attention.value], attention.out, head=head, width=4)
    graph = graphopt.capture(model, X)
    pruned = prune_heads_only(graph, 0.5)
    assert [m.out_features for m in pruned.module.modules() if isinstance(m, nn.Linear)][:4] == [8, 8, 8, 16]
    assert pruned.stats().params < graph.stats().params and pruned.stats().flops < graph.stats().flops
    fresh = torch.randn(3, 7, 16)  # another batch and sequence length: the rewritten reshapes follow them
    assert relative_error(model(fresh), pruned(fresh)) <= EXACT


def test_head_importance_ranks_whole_heads_and_live_heads_change_the_output_when_removed() -> None:
    model = transformer_encoder(d_model=16, nhead=4, num_layers=1)
    attention = model.layers[0].attention
    with torch.no_grad():
        attention.out.weight[:, 4:8] *= 10  # head 1 reads through the largest out columns
    graph = graphopt.capture(model, X)
    analysis = analyze(graph.copy())
    (heads,) = [g for g in analysis.groups if g.unit == "heads"]
    ranked = sorted(heads.units, key=scores(analysis, "l1").__getitem__)
    assert ranked[-1] == heads.units[1] and heads.unit_width == 4
    pruned = prune_heads_only(graph, 0.75)
    assert [m.out_features for m in pruned.module.modules() if isinstance(m, nn.Linear)][:3] == [4, 4, 4]
    assert relative_error(model(X), pruned(X)) > 1e-3  # live heads went: the output moves (a test that can fail)
    head_1 = pruned.module.get_submodule("layers.0.attention.out").weight
    assert torch.equal(head_1, attention.out.weight[:, 4:8])  # the kept head is head 1, its weights untouched


def test_prune_by_flops_takes_heads_and_the_result_trains() -> None:
    model = transformer_encoder(d_model=32, nhead=4, num_layers=2)
    pruned, report = graphopt.prune(model, torch.randn(1, 8, 32), flops=0.5)
    assert report.after.flops <= 0.5 * report.before.flops
    assert any(m.out_features < 32 for name, m in pruned.module.named_modules() if name.endswith("attention.query"))
    loss = pruned.module(torch.randn(2, 8, 32)).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in pruned.module.parameters())
