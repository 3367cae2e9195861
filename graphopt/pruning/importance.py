"""How much each unit of a group matters, and which units a ratio removes.

- ``l1`` / ``l2``: the magnitude (sum of ``|w|``, or of ``w**2``) of every weight the unit owns,
  summed over the group: producer rows and biases, BatchNorm scales, consumer columns (as
  Torch-Pruning's group magnitude does);
- ``bn_scale``: ``|gamma|`` of the group's BatchNorms (network slimming); a group without one
  falls back to ``l1``;
- ``taylor``: first-order Taylor (Molchanov et al., 2019): ``|sum of w * dL/dw|`` over the unit's
  weights, the loss change its removal predicts; needs ``data=(inputs, targets)`` and a ``loss``
  (default cross-entropy);
- ``random``: seeded uniform scores, the baseline every pruning paper reports.

Scores only rank units within one group; ``select`` removes the lowest ``ratio`` of each group,
keeping a multiple of ``round_to`` channels (so kernels keep their SIMD-friendly widths).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from graphopt.errors import InputError
from graphopt.pruning.dependency import DependencyAnalysis, PruningGroup

IMPORTANCE = ("l1", "l2", "bn_scale", "taylor", "random")


def _row_scores(weight: torch.Tensor, power: int) -> torch.Tensor:
    flat = weight.detach().reshape(weight.shape[0], -1).double()
    return flat.abs().sum(1) if power == 1 else flat.pow(2).sum(1)


def _column_scores(weight: torch.Tensor, groups: int, power: int) -> torch.Tensor:
    """One score per input channel: the weights that read it (per group for grouped convolutions)."""
    w = weight.detach().double()
    out, per_group = int(w.shape[0]), int(w.shape[1])
    if groups > 1 and per_group == 1:
        return _row_scores(w, power).reshape(groups, out // groups).sum(1)
    columns = w.reshape(groups, out // groups, per_group, -1).permute(0, 2, 1, 3).reshape(groups * per_group, -1)
    scores = columns.abs().sum(1) if power == 1 else columns.pow(2).sum(1)
    return scores


def _gradients(analysis: DependencyAnalysis, data: Any, loss: Callable[..., torch.Tensor] | None) -> None:
    """Leave ``dL/dw`` in ``.grad`` of every parameter of the analysed graph (one batch, eval mode)."""
    if data is None or not isinstance(data, (tuple, list)) or len(data) != 2:
        raise InputError("taylor importance needs data=(inputs, targets): one batch and its labels")
    inputs, targets = data
    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    module = analysis.graph.module
    loss = loss or torch.nn.functional.cross_entropy
    with torch.enable_grad():
        for parameter in module.parameters():
            parameter.requires_grad_(parameter.is_floating_point())
            parameter.grad = None
        try:
            value = loss(module(*inputs), targets)
            value.backward()
        except Exception as error:
            raise InputError(f"taylor importance: the loss on data failed: {type(error).__name__}: {error}") from error


def _taylor(tensor: torch.Tensor) -> torch.Tensor:
    grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
    return (tensor.detach() * grad).double()


def scores(
    analysis: DependencyAnalysis,
    importance: str = "l1",
    *,
    seed: int = 0,
    data: Any = None,
    loss: Callable[..., torch.Tensor] | None = None,
) -> dict[int, float]:
    """The importance of every unit (root element id) of the analysed graph's groups."""
    if importance not in IMPORTANCE:
        raise InputError(f"unknown importance '{importance}' (choose {', '.join(IMPORTANCE)})")
    units = [root for group in analysis.groups for root in group.units]
    if importance == "taylor":
        _gradients(analysis, data, loss)
        found = _taylor_scores(analysis, units)
        for parameter in analysis.graph.module.parameters():
            parameter.grad = None
        return found
    if importance == "random":
        generator = torch.Generator().manual_seed(seed)
        values = torch.rand(len(units), generator=generator, dtype=torch.float64)
        return dict(zip(units, values.tolist(), strict=True))
    power = 2 if importance == "l2" else 1
    magnitude: dict[int, float] = dict.fromkeys(units, 0.0)
    scale: dict[int, float] = {}
    for use in analysis.uses:
        weight = use.layer.get("weight")
        if weight is None:
            continue
        parts: list[tuple[list[int], torch.Tensor]] = []
        if use.layer.kind == "batch_norm":
            if use.output is None:
                continue
            gamma = weight.detach().double().abs()
            for element, value in zip(use.output.ids, gamma.tolist(), strict=True):
                root = analysis.root(element)
                if root in magnitude:
                    scale[root] = scale.get(root, 0.0) + value
            parts.append((use.output.ids, gamma if power == 1 else gamma.pow(2)))
        else:
            if use.output is not None:
                rows = _row_scores(weight, power)
                bias = use.layer.get("bias")
                if bias is not None:
                    rows = rows + (bias.detach().double().abs() if power == 1 else bias.detach().double().pow(2))
                parts.append((use.output.ids, rows))
            if use.input is not None:
                parts.append((use.input.ids, _column_scores(weight, use.groups, power)))
        for ids, values in parts:
            per_position = values.tolist()
            if len(per_position) != len(ids):  # flatten -> linear: columns per channel come through ids
                continue
            for element, value in zip(ids, per_position, strict=True):
                root = analysis.root(element)
                if root in magnitude:
                    magnitude[root] += value
    if importance == "bn_scale":
        result = {}
        for group in analysis.groups:
            source = scale if all(root in scale for root in group.units) else magnitude
            result.update({root: source[root] for root in group.units})
        return result
    return magnitude


def _taylor_scores(analysis: DependencyAnalysis, units: list[int]) -> dict[int, float]:
    """Signed ``w * dL/dw`` summed per unit over every weight it owns, then its magnitude."""
    total: dict[int, float] = dict.fromkeys(units, 0.0)
    for use in analysis.uses:
        weight = use.layer.get("weight")
        if weight is None:
            continue
        parts: list[tuple[list[int], torch.Tensor]] = []
        if use.layer.kind == "batch_norm":
            if use.output is not None:
                bias = use.layer.get("bias")
                values = _taylor(weight) + (_taylor(bias) if bias is not None else 0)
                parts.append((use.output.ids, values))
        else:
            product = _taylor(weight)
            if use.output is not None:
                rows = product.reshape(product.shape[0], -1).sum(1)
                bias = use.layer.get("bias")
                parts.append((use.output.ids, rows + (_taylor(bias) if bias is not None else 0)))
            if use.input is not None:
                parts.append((use.input.ids, _signed_columns(product, use.groups)))
        for ids, values in parts:
            if len(values) != len(ids):
                continue
            for element, value in zip(ids, values.tolist(), strict=True):
                root = analysis.root(element)
                if root in total:
                    total[root] += value
    return {root: abs(value) for root, value in total.items()}


def _signed_columns(product: torch.Tensor, groups: int) -> torch.Tensor:
    out, per_group = int(product.shape[0]), int(product.shape[1])
    if groups > 1 and per_group == 1:
        return product.reshape(groups, -1).sum(1)
    columns = product.reshape(groups, out // groups, per_group, -1).permute(0, 2, 1, 3)
    return columns.reshape(groups * per_group, -1).sum(1)


def kept_units(group: PruningGroup, ratio: float, round_to: int) -> int:
    """How many of ``group``'s units stay at ``ratio``: a multiple of the rounding step, at least one step."""
    step = max(1, round_to // math.gcd(round_to, group.unit_width))
    if group.size <= step:
        return group.size
    keep = step * round(group.size * (1 - ratio) / step)
    return min(group.size, max(step, keep))


def select(
    analysis: DependencyAnalysis,
    unit_scores: dict[int, float],
    ratios: dict[int, float],
    round_to: int,
) -> set[int]:
    """The units to remove: in each group (index -> ratio), the lowest-scoring ones beyond ``kept_units``."""
    removed: set[int] = set()
    for group in analysis.groups:
        ratio = ratios.get(group.index, 0.0)
        if ratio <= 0:
            continue
        keep = kept_units(group, ratio, round_to)
        ranked = sorted(group.units, key=lambda root: (unit_scores[root], root))
        removed.update(ranked[: group.size - keep])
    return removed
