"""Structured pruning that shrinks tensors: dependency groups, importance, budgets, sensitivity.

>>> for group in graphopt.pruning.groups(graphopt.capture(model, x)):
...     print(group.describe())
>>> pruned, report = graphopt.prune(model, x, flops=0.5)   # at most half the FLOPs
>>> print(report.table())
>>> graphopt.pruning.recover(pruned.module, model, (x_train, y_train), epochs=3)  # distil back

``pruned`` is a ``graphopt.Graph`` (a torch.fx GraphModule with smaller weights): it trains, and
``graphopt.compile`` takes it.
"""

from __future__ import annotations

from graphopt.pruning.batch_norm import recalibrate
from graphopt.pruning.dependency import DependencyAnalysis, PruningGroup, analyze, groups
from graphopt.pruning.importance import IMPORTANCE, scores, select
from graphopt.pruning.recovery import recover
from graphopt.pruning.sensitivity import SensitivityReport, SensitivityRow, sensitivity
from graphopt.pruning.shrink import mask, shrink
from graphopt.pruning.sparsify import SparsityReport, sparsify
from graphopt.pruning.structured import PruneReport, PruneStep, prune

__all__ = [
    "IMPORTANCE",
    "DependencyAnalysis",
    "PruneReport",
    "PruneStep",
    "PruningGroup",
    "SensitivityReport",
    "SensitivityRow",
    "SparsityReport",
    "analyze",
    "groups",
    "mask",
    "prune",
    "recalibrate",
    "recover",
    "scores",
    "select",
    "sensitivity",
    "shrink",
    "sparsify",
]
