"""Pruning transformers: whole attention heads, on a Hugging Face BERT built from a config.

BERT captures through ``torch.export`` (function/aten spelling: weights are ``get_attr`` nodes,
not submodules), which is where shrinking once left the old tensors beside the new ones and
reported more parameters after pruning than before. The head tests here run on BERT; the same
on the project's own encoder (symbolic_trace spelling) are in test_attention_heads.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import graphopt
from graphopt.numerics import relative_error
from graphopt.pruning import analyze
from tests.pruning.models import EXACT, shrunk_and_masked
from tests.pruning.test_attention_heads import prune_heads_only, silence_head

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # importing transformers and torch.export-ing BERT take a few seconds


class Bert(torch.nn.Module):
    """A two-layer BERT from a config, random weights; ids ``2 x 16`` in, hidden states out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        config = transformers.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
        )
        self.m = transformers.BertModel(config).eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.m(ids).last_hidden_state


IDS = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def bert_graph() -> graphopt.Graph:
    return graphopt.capture(Bert().eval(), IDS)


def test_pruning_bert_holds_fewer_parameters_and_keeps_its_output_shape(bert_graph: graphopt.Graph) -> None:
    pruned, report = graphopt.prune(bert_graph, ratio=0.5)
    assert report.before == _read_only(bert_graph).stats()  # the pooler BERT never reads is not counted
    assert report.after == pruned.stats()
    assert report.after.params < report.before.params and report.after.flops < report.before.flops
    names = [name for name, _ in pruned.module.named_parameters()]
    assert not any("intermediate" in name for name in names), "the unpruned FFN weights were left behind"
    assert pruned(IDS).shape == bert_graph(IDS).shape == (2, 16, 32)
    assert all(p.requires_grad for p in pruned.module.parameters())  # fine-tuning can train the new weights


def test_pruned_bert_equals_the_masked_original_and_its_saved_program(
    bert_graph: graphopt.Graph, tmp_path: Path
) -> None:
    groups = analyze(bert_graph.copy()).groups
    assert groups, "BERT's FFN hidden width should be prunable"
    shrunk, masked = shrunk_and_masked(bert_graph, {g.index: 0.5 for g in groups})
    other = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    assert relative_error(masked(other), shrunk(other)) <= EXACT
    from graphopt.commands.optimize import save_program

    save_program(shrunk, tmp_path / "p.pt2")
    loaded = torch.export.load(str(tmp_path / "p.pt2")).module()
    assert relative_error(shrunk(other), loaded(other).detach()) <= EXACT


def test_bert_heads_group_q_k_v_and_out_and_silent_heads_go_without_changing_the_output(
    bert_graph: graphopt.Graph,
) -> None:
    heads = [g for g in analyze(bert_graph.copy()).groups if g.unit == "heads"]
    assert [(g.size, g.unit_width, len(g.layers)) for g in heads] == [(2, 16, 4), (2, 16, 4)]
    model = Bert().eval()
    for layer in model.m.encoder.layer:
        attention = layer.attention
        projections = [attention.self.query, attention.self.key, attention.self.value]
        silence_head(projections, attention.output.dense, head=1, width=16)
    graph = graphopt.capture(model, IDS)
    pruned = prune_heads_only(graph, 0.5)
    assert pruned.stats().params < graph.stats().params
    query = pruned.module.get_parameter(str(_weight_of(pruned, "linear").target))
    assert query.shape == (16, 32)  # q down to one head of 16
    other = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(2))
    assert relative_error(model(other).detach(), pruned(other)) <= EXACT


def _weight_of(graph: graphopt.Graph, name: str) -> torch.fx.Node:
    weight = graph.node(name).args[1]
    assert isinstance(weight, torch.fx.Node)
    return weight


def _read_only(graph: graphopt.Graph) -> graphopt.Graph:
    from graphopt.passes._layers import remove_unused_attributes

    copy = graph.copy()
    remove_unused_attributes(copy.module)
    return copy
