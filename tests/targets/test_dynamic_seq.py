"""``dynamic_seq_len=N``: one artifact serves every sequence length from 1 to N, checked against eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.eager_check import recorded
from graphopt.errors import InputError, MismatchError
from samples.corpus import build, corpus
from samples.transformer import transformer_encoder
from tests.targets.conftest import assert_matches_eager


class PositionalEncoder(nn.Module):
    """Token embedding + a learned position table sliced to the input's length (``pos[:, :seq]``, which
    TVM's frontend clamps to ``min(seq, 16)``), one encoder layer, and a mean over the sequence."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(40, 32)
        self.pos = nn.Parameter(torch.randn(1, 16, 32))
        self.encoder = transformer_encoder(d_model=32, nhead=4, num_layers=1)
        self.head = nn.Linear(32, 3)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(self.embed(tokens) + self.pos[:, : tokens.shape[1]])
        return hidden, self.head(hidden.mean(dim=1))


def tokens(batch: int, length: int) -> torch.Tensor:
    return torch.randint(0, 40, (batch, length), generator=torch.Generator().manual_seed(length + 7 * batch))


@pytest.mark.slow
def test_one_artifact_runs_every_length_up_to_the_bound(compile_cpu) -> None:
    model = PositionalEncoder().eval()
    compiled = compile_cpu(model, tokens(2, 6), dynamic_seq_len=16, dynamic_batch=True)
    assert compiled.manifest.dynamic_seq_len == 16
    assert compiled.manifest.inputs[0].shape == ("batch", "seq")
    assert compiled.manifest.outputs[0].shape == ("batch", "seq", 32)
    for batch, length in [(2, 1), (1, 5), (3, 6), (2, 11), (1, 16)]:
        assert_matches_eager(model, compiled, tokens(batch, length))
    with pytest.raises(InputError, match=r"sequence length 17: this artifact accepts 1 to 16"):
        compiled(tokens(2, 17).numpy())


class TwoSequences(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * 2.0 + b


def test_inputs_must_share_one_sequence_length(compile_cpu) -> None:
    compiled = compile_cpu(TwoSequences(), torch.randn(2, 4, 3), torch.randn(2, 4, 3), dynamic_seq_len=8)
    a, b = torch.randn(2, 7, 3), torch.randn(2, 7, 3)
    assert_matches_eager(TwoSequences(), compiled, a, b)
    with pytest.raises(InputError, match="input 'b' has sequence length 5, other inputs have 7"):
        compiled(a.numpy(), np.zeros((2, 5, 3), np.float32))


class FixedLength(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], 4, 2).sum(dim=1)


def test_bad_requests_are_one_line_errors(compile_cpu) -> None:
    with pytest.raises(InputError, match="cannot compile with a dynamic sequence length"):
        compile_cpu(FixedLength(), torch.randn(2, 8), dynamic_seq_len=16)
    with pytest.raises(InputError, match="shorter than the example inputs' sequence length 8"):
        compile_cpu(TwoSequences(), torch.randn(2, 8), torch.randn(2, 8), dynamic_seq_len=4)
    with pytest.raises(InputError, match="dynamic_seq_len=0: expected a positive integer"):
        compile_cpu(TwoSequences(), torch.randn(2, 8), torch.randn(2, 8), dynamic_seq_len=0)


@pytest.mark.slow
@pytest.mark.skipif("hf_gpt2" not in corpus(), reason="transformers is not installed")
def test_hugging_face_gpt2_compiled_once_matches_eager_at_several_lengths(tmp_path) -> None:
    """torch.export captures GPT-2 (symbolic_trace cannot): the capture keeps the length symbolic too,
    else its reshapes would hold the example's length."""
    model, (ids, mask) = build("hf_gpt2")
    graphopt.compile(model, (ids, mask), out_dir=tmp_path / "gpt2", dynamic_seq_len=32)
    loaded = graphopt.load(tmp_path / "gpt2")
    assert loaded.manifest.inputs[0].shape == (2, "seq")
    for length in (1, 3, 8, 32):
        ids = torch.randint(0, 64, (2, length), generator=torch.Generator().manual_seed(length))
        mask = torch.ones(2, length, dtype=torch.int64)
        mask[1, length // 2 + 1 :] = 0
        assert_matches_eager(model, loaded, ids, mask)


def test_the_eager_check_runs_at_length_one_the_example_length_and_the_bound(tmp_path) -> None:
    a, b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    compiled = graphopt.compile(TwoSequences().eval(), (a, b), out_dir=tmp_path / "ok", dynamic_seq_len=8)
    check = compiled.manifest.eager_check
    assert check["ok"] and tuple(check["lengths"]) == (1, 4, 8)
    assert "at sequence lengths 1, 4, 8" in recorded(compiled.manifest).describe()

    def wrong_at_length_one(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Equal to the model at the example length: only a check at length 1 can tell them apart."""
        return TwoSequences()(x, y) + float(x.shape[1] == 1)

    with pytest.raises(MismatchError, match="at sequence lengths 1, 4, 8"):
        graphopt.compile(
            TwoSequences().eval(), (a, b), out_dir=tmp_path / "bad", dynamic_seq_len=8, reference=wrong_at_length_one
        )
    assert not (tmp_path / "bad").exists()


TINY_ENCODER = """
    from samples.transformer import transformer_encoder

    def tiny_encoder():
        return transformer_encoder(d_model=16, nhead=2, num_layers=1)
"""


def test_cli_dynamic_seq_len_builds_one_artifact_for_several_lengths(capsys, tmp_path) -> None:
    import json
    import textwrap

    from graphopt.cli import main

    source = tmp_path / "encoder.py"
    source.write_text(textwrap.dedent(TINY_ENCODER))
    out_dir = tmp_path / "encoder"
    argv = ["compile", f"{source}:tiny_encoder", "--input-shape", "2x5x16", "--dynamic-seq-len", "12"]
    status = main([*argv, "-o", str(out_dir), "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    check = json.loads(out)["eager_check"]
    assert check["ok"] and check["lengths"] == [1, 5, 12]
    loaded = graphopt.load(out_dir)
    assert loaded.manifest.inputs[0].shape == (2, "seq", 16)
    model = transformer_encoder(d_model=16, nhead=2, num_layers=1)
    for length in (3, 12):
        x = torch.randn(2, length, 16, generator=torch.Generator().manual_seed(length))
        assert_matches_eager(model, loaded, x)
