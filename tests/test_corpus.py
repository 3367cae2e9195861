"""The corpus (samples/corpus): its shape, its weights, and a fast subset compiled for cpu against eager.

``python -m benchmarks.coverage`` runs every entry (benchmarks/results/coverage.md); here only the
entries marked ``fast``, the slower ones among them marked ``slow``. The check is the benchmark's:
graphopt.compile with O2, outputs on a fresh input set within the float32 tolerance of
tests/targets/conftest.py.
"""

from __future__ import annotations

import pytest
import torch

import graphopt
from graphopt.numerics import relative_error
from samples.corpus import build, corpus, fresh_like
from tests.targets.conftest import TOLERANCE

FAST = [name for name, entry in corpus().items() if entry.fast]
QUICK = {"mlp", "siamese_dict"}  # a second or two each; the others take 5-20 s on 2 shared cores


def test_the_corpus_spans_at_least_30_architectures_with_no_zero_parameter() -> None:
    entries = corpus()
    assert len(entries) >= 30 or not any(name.startswith("hf_") for name in entries)
    assert len({entry.family for entry in entries.values()}) >= 12
    model, _ = build("resnet_basic")
    assert all(p.any() for p in model.parameters())
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.allclose(norm.running_var, torch.ones_like(norm.running_var))


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in FAST])
def test_fast_corpus_entry_compiles_and_matches_eager(name: str) -> None:
    model, inputs = build(name)
    compiled = graphopt.compile(model, inputs, target="cpu", **corpus()[name].options)
    check = fresh_like(inputs, seed=1)
    with torch.no_grad():
        expected = model(*check)
    assert relative_error(expected, compiled(*[t.numpy() for t in check])) <= TOLERANCE


@pytest.mark.slow
def test_vit_b16_at_full_size_builds_and_matches_eager() -> None:
    """Issue 14, item 3: ViT-B/16 (1x3x224x224, 12 layers of width 768, 86.6M parameters, attention
    from nn.TransformerEncoderLayer) aborted the CPU build with std::bad_alloc (ConvertLayout on
    MultiheadAttention's negative axes, bounded by PositiveAxes), and held a copy of its weights per
    pass while optimizing. A few minutes on 2 shared cores; ``hf_vit_base`` (transformers' ViT-B) in
    the coverage benchmark is the same size."""
    model, inputs = build("vit_b16")
    compiled = graphopt.compile(model, inputs, target="cpu")
    check = fresh_like(inputs, seed=1)
    with torch.no_grad():
        expected = model(*check)
    assert relative_error(expected, compiled(*[t.numpy() for t in check])) <= TOLERANCE
