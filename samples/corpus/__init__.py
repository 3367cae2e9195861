"""A corpus of architectures beyond the samples, for coverage tests and ``benchmarks/coverage.py``.

Each entry is a family's typical pattern at a tiny size (a few seconds to compile): our own small
models of each family (``own.py``: convnets, segmentation, video, audio, recurrent, attention,
mixers...) and, when Hugging Face ``transformers`` is installed (the dev extra), library model
definitions built from configs with random weights (``hf.py``: BERT, GPT-2, T5 encoder, Llama,
ViT, Whisper encoder). Nothing is downloaded.

Weights are seeded and random; ``randomize`` also draws BatchNorm statistics and the affine terms
of every norm, and re-draws every parameter left at zero by its initializer (biases, layer scales),
so no output is matched vacuously (a dropped bias or an identity-like norm would show).

>>> model, inputs = build("resnet_basic")
>>> model(*inputs).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Entry:
    """One corpus model: ``build()`` returns ``(model in eval mode, example inputs)``."""

    name: str
    family: str
    build: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]
    #: In the fast test subset (tests/test_corpus.py); every entry runs in the benchmark.
    fast: bool = False
    #: ``graphopt.compile`` options the entry needs (``fallback="torch"`` for a data-dependent step).
    options: dict[str, Any] = field(default_factory=dict)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Seeded non-default weights: norm statistics and affine terms drawn, zero parameters re-drawn."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            weight = getattr(module, "weight", None)
            is_norm = isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm))
            if (is_norm or "Norm" in type(module).__name__) and isinstance(weight, torch.Tensor):
                weight.copy_(torch.rand(weight.shape, generator=generator) + 0.5)
                bias = getattr(module, "bias", None)
                if isinstance(bias, torch.Tensor):
                    bias.copy_(torch.randn(bias.shape, generator=generator) * 0.2)
    return model.eval()


def fresh_like(inputs: tuple[Any, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """Inputs of the same shapes and kinds: normal floats, integer ids in the example's range, the same masks."""
    generator = torch.Generator().manual_seed(seed)
    fresh = []
    for t in inputs:
        if t.is_floating_point():
            fresh.append(torch.randn(t.shape, generator=generator))
        elif int(t.min()) == 0 and int(t.max()) <= 1:
            fresh.append(t.clone())  # an attention mask
        else:
            fresh.append(torch.randint(0, int(t.max()) + 1, t.shape, generator=generator))
    return tuple(fresh)


def _collect() -> dict[str, Entry]:
    from samples.corpus import hf, own

    entries = own.entries() + hf.entries()
    return {entry.name: entry for entry in entries}


CORPUS: dict[str, Entry] = {}


def corpus() -> dict[str, Entry]:
    """Every entry by name (the transformers ones only where ``transformers`` is installed)."""
    if not CORPUS:
        CORPUS.update(_collect())
    return CORPUS


def build(name: str) -> tuple[nn.Module, tuple[Any, ...]]:
    """The model and inputs of one entry, weights seeded by the entry's name."""
    entry = corpus()[name]
    torch.manual_seed(sum(map(ord, name)))
    model, inputs = entry.build()
    return randomize(model, seed=sum(map(ord, name))), inputs
