"""The ensemble in plain PyTorch eager mode: the reference a fused graph and its artifact are checked against.

Written with other ops than the fused graph uses (``one_hot`` and a Python sum), so agreement is
not one implementation compared with itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def combine_outputs(outputs: Sequence[Any], combine: str, weights: Sequence[float] | None = None) -> Any:
    """The members' eager outputs combined as ``fuse_models`` documents it (weights normalized)."""
    if combine == "none":
        return tuple(outputs)
    if combine == "stack":
        return torch.stack(list(outputs))
    if combine == "mean":
        return sum(outputs) / len(outputs)
    if combine == "weighted":
        assert weights is not None
        return sum(w * o for w, o in zip(weights, outputs, strict=True)) / sum(weights)
    if combine == "vote":
        classes = outputs[0].shape[-1]
        counts = torch.stack([F.one_hot(o.argmax(-1), classes) for o in outputs]).sum(0)
        return counts.argmax(-1)  # the first maximum: ties go to the lowest class index
    raise ValueError(f"unknown combine {combine!r}")


class EagerEnsemble:
    """``models`` run in eager mode on shared inputs (or, ``per_member`` counts given, each on its own
    slice of the inputs), combined by ``combine_outputs``."""

    def __init__(
        self,
        models: Sequence[Any],
        combine: str,
        weights: Sequence[float] | None = None,
        per_member: Sequence[int] | None = None,
    ) -> None:
        self.models = list(models)
        self.combine = combine
        self.weights = weights
        self.per_member = per_member

    def __call__(self, *inputs: Any) -> Any:
        with torch.no_grad():
            if self.per_member is None:
                outputs = [model(*inputs) for model in self.models]
            else:
                outputs, start = [], 0
                for model, count in zip(self.models, self.per_member, strict=True):
                    outputs.append(model(*inputs[start : start + count]))
                    start += count
        return combine_outputs(outputs, self.combine, self.weights)
