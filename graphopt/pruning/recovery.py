"""Recovery after pruning: a short fine-tune that distils the unpruned model into the pruned one.

Plain cross-entropy at a small constant learning rate recovers slowly: a pruned digits
MobileNet was still 4.5 points below the unpruned one after 3 epochs. Two things close the gap
within the same epochs (benchmarks/results/pruning.md):

- the loss is Hinton's distillation from the unpruned model (``graphopt.distill``'s loss): the
  teacher's softened outputs carry what the removed channels knew, on every training input;
- the learning rate follows a one-cycle schedule (warm up to ``lr``, cosine down to ~0), so a
  short budget can take large steps early and still settle at the end.

``recover`` trains in place (the pruned ``fx.GraphModule`` is the caller's copy) and returns the
mean loss of each epoch; pass it to ``graphopt.prune(..., finetune=...)`` for an iterative
prune -> recover schedule.

>>> pruned, _ = graphopt.prune(graph, flops=0.5)
>>> graphopt.pruning.recover(pruned.module, graph.module, (x_train, y_train), epochs=3)
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from graphopt.compression.distill import distillation_loss
from graphopt.compression.training import batches, check_outputs
from graphopt.errors import InputError


def recover(
    student: torch.nn.Module,
    teacher: Any,
    train_data: Any,
    *,
    epochs: int = 3,
    lr: float = 1e-2,
    batch_size: int = 32,
    temperature: float = 4.0,
    alpha: float = 0.9,
    warmup: float = 0.15,
    seed: int = 0,
) -> list[float]:
    """Fine-tune ``student`` in place on ``train_data``, distilling ``teacher`` (module or Graph).

    ``alpha=0`` trains on the labels alone (cross-entropy) with the same schedule. ``train_data``
    is as for ``graphopt.distill`` (a tensor pair, a list of batches, a DataLoader). Returns the
    mean loss of each epoch; the student is left in eval mode.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"epochs must be a non-negative integer, got {epochs!r}")
    if not lr > 0 or not temperature > 0 or not 0 <= alpha <= 1 or not 0 <= warmup < 1:
        raise InputError(
            f"need lr > 0, temperature > 0, alpha in [0, 1] and warmup in [0, 1); got lr={lr}, "
            f"temperature={temperature}, alpha={alpha}, warmup={warmup}"
        )
    teacher_module = copy.deepcopy(getattr(teacher, "module", teacher)).eval()
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    per_epoch = _batches_per_epoch(train_data, batch_size)
    schedule = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=epochs * per_epoch, pct_start=warmup, anneal_strategy="cos"
        )
        if per_epoch and epochs
        else None
    )
    losses = []
    for epoch in range(epochs):
        student.train()
        total, count = 0.0, 0
        for inputs, labels in batches(train_data, batch_size, epoch, seed):
            outputs = student(inputs)
            if count == 0 and epoch == 0:
                check_outputs(outputs, labels, type(student).__name__)
            with torch.no_grad():
                soft = teacher_module(inputs) if alpha > 0 else outputs.detach()
            loss = distillation_loss(outputs, soft, labels, temperature, alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None and schedule.last_epoch + 1 < epochs * per_epoch:
                schedule.step()
            total, count = total + float(loss.detach()) * len(labels), count + len(labels)
        if count == 0:
            raise InputError("train_data gave no batches")
        losses.append(total / count)
    student.eval()
    return losses


def _batches_per_epoch(train_data: Any, batch_size: int) -> int:
    """Optimizer steps in one epoch, for the schedule (0 when the data has no length: constant lr)."""
    if (
        isinstance(train_data, (tuple, list))
        and len(train_data) == 2
        and all(isinstance(t, torch.Tensor) for t in train_data)
    ):
        return math.ceil(len(train_data[1]) / batch_size)
    try:
        return len(train_data)
    except TypeError:
        return 0
