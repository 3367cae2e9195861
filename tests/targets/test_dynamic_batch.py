"""``dynamic_batch=True``: one artifact, any batch size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphopt
from graphopt.errors import InputError
from samples.cnn import digits_cnn
from samples.transformer import transformer_encoder
from tests.targets.conftest import assert_matches_eager


def test_cnn_compiled_at_batch_2_runs_at_batch_1_3_and_7(tmp_path) -> None:
    model = digits_cnn()
    graphopt.compile(model, torch.randn(2, 1, 28, 28), out_dir=tmp_path / "cnn", dynamic_batch=True)
    loaded = graphopt.load(tmp_path / "cnn")
    assert loaded.manifest.dynamic_batch is True
    assert loaded.manifest.inputs[0].shape == ("batch", 1, 28, 28)
    assert loaded.manifest.outputs[0].shape == ("batch", 10)
    for batch in (1, 3, 7):
        x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
        assert loaded(x.numpy()).shape == (batch, 10)
        assert_matches_eager(model, loaded, x)
    with pytest.raises(InputError, match=r"expected shape \(batch, 1, 28, 28\) float32"):
        loaded(np.zeros((3, 1, 28, 27), np.float32))


def test_transformer_with_dynamic_batch(compile_cpu) -> None:
    model = transformer_encoder(d_model=32, nhead=4, num_layers=1, seq_len=8)
    compiled = compile_cpu(model, torch.randn(2, 8, 32), dynamic_batch=True)
    for batch in (1, 5):
        x = torch.randn(batch, 8, 32, generator=torch.Generator().manual_seed(batch))
        assert_matches_eager(model, compiled, x)


class FixedBatch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(2, -1) * 2.0


def test_a_model_that_fixes_its_batch_size_is_a_clear_error(compile_cpu) -> None:
    with pytest.raises(InputError, match="cannot compile with a dynamic batch size"):
        compile_cpu(FixedBatch(), torch.randn(2, 3), dynamic_batch=True)


def test_an_example_batch_of_one_still_gives_a_dynamic_batch(compile_cpu) -> None:
    """torch.export specializes size-1 dimensions; the lowering traces at batch 2 instead."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).eval()
    compiled = compile_cpu(model, torch.randn(1, 6), dynamic_batch=True)
    assert compiled.manifest.inputs[0].shape == ("batch", 6)
    for batch in (1, 4):
        assert_matches_eager(model, compiled, torch.randn(batch, 6))
