"""Comparing model outputs: the one error measure verify mode, tests and benchmarks share."""

from __future__ import annotations

from typing import Any

import numpy as np


def flatten_outputs(value: Any) -> list[np.ndarray]:
    """Outputs (a tensor, an array, or nested tuples/lists/dicts of them) as a list of arrays.

    A dict is read in insertion order, the order ``torch.export`` (and so a compiled artifact) keeps.
    """
    if isinstance(value, dict):
        return [a for item in value.values() for a in flatten_outputs(item)]
    if isinstance(value, (list, tuple)):
        return [a for item in value for a in flatten_outputs(item)]
    if hasattr(value, "detach"):
        return [_tensor_array(value.detach().cpu())]
    if hasattr(value, "numpy"):
        return [np.asarray(value.numpy())]
    return [np.asarray(value)]


def _tensor_array(tensor: Any) -> np.ndarray:
    """A torch tensor as numpy; bfloat16, which numpy lacks, as ``ml_dtypes.bfloat16`` of the same bits."""
    import torch

    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def relative_error(reference: Any, candidate: Any) -> float:
    """max |reference - candidate| / max(|reference|), over all outputs (0 when both are zero).

    Scaling by the largest reference magnitude makes one tolerance meaningful for logits of any
    size; a shape mismatch or a NaN where the reference has none counts as infinite error.
    """
    expected, actual = flatten_outputs(reference), flatten_outputs(candidate)
    if len(expected) != len(actual):
        return float("inf")
    worst = 0.0
    for e, a in zip(expected, actual, strict=True):
        if e.shape != a.shape:
            return float("inf")
        e64, a64 = e.astype(np.float64), a.astype(np.float64)
        if np.isnan(a64).any() and not np.isnan(e64).any():
            return float("inf")
        scale = float(np.nanmax(np.abs(e64))) if e64.size else 0.0
        diff = float(np.nanmax(np.abs(e64 - a64))) if e64.size else 0.0
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst
