"""A Transformer encoder (Vaswani et al., 2017) written with explicit layers, traceable by symbolic_trace.

Attention is spelled out as Linear projections, ``matmul``, scaling, ``softmax`` and a reshape to
heads, rather than ``nn.MultiheadAttention``, so every op is a visible node that passes can match.
Post-norm residual blocks with a GELU feed-forward. Weights are seeded random.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead = nhead
        self.head_dim = d_model // nhead
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.softmax = nn.Softmax(dim=-1)

    def _heads(self, x: torch.Tensor, batch: int, seq_len: int) -> torch.Tensor:
        return x.reshape(batch, seq_len, self.nhead, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, d_model = x.shape
        q = self._heads(self.query(x), batch, seq_len)
        k = self._heads(self.key(x), batch, seq_len)
        v = self._heads(self.value(x), batch, seq_len)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        context = torch.matmul(self.softmax(scores), v)
        return self.out(context.transpose(1, 2).reshape(batch, seq_len, d_model))


class EncoderLayer(nn.Module):
    """x = LN(x + attention(x)); x = LN(x + FFN(x)) with FFN = Linear-GELU-Linear."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__()
        self.attention = SelfAttention(d_model, nhead)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, dim_feedforward)
        self.gelu = nn.GELU()
        self.ff2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.ff2(self.gelu(self.ff1(x))))


class TransformerEncoder(nn.Module):
    """Input ``N x seq_len x d_model`` float32 (already embedded); output the same shape."""

    def __init__(
        self, d_model: int = 256, nhead: int = 4, num_layers: int = 4, dim_feedforward: int | None = None
    ) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[EncoderLayer(d_model, nhead, dim_feedforward or 4 * d_model) for _ in range(num_layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def transformer_encoder(
    d_model: int = 256, nhead: int = 4, num_layers: int = 4, seq_len: int = 128, seed: int = 0
) -> TransformerEncoder:
    """A seeded random encoder in eval mode; input float32 ``(1, seq_len, d_model)``, e.g. ``(1, 128, 256)``.

    ``seq_len`` documents the intended input; the model itself accepts any sequence length.

    >>> model = transformer_encoder(d_model=64, nhead=4, num_layers=2, seq_len=16)
    >>> model(torch.randn(1, 16, 64)).shape
    torch.Size([1, 16, 64])
    """
    del seq_len
    torch.manual_seed(seed)
    return TransformerEncoder(d_model, nhead, num_layers).eval()
