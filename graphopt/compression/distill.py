"""Knowledge distillation (Hinton et al., 2015): a student trained on the teacher's softened outputs.

The loss is ``alpha * T**2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) *
cross_entropy(student, labels)``; the ``T**2`` keeps the soft term's gradients on the scale of the
hard one's as ``T`` changes. ``alpha=0`` is plain training on the labels, the baseline a distilled
student should beat. With ``eval`` (a function of the model returning a score, higher is better) the
student is scored after every epoch and the best epoch's weights are the ones returned; ``patience``
stops after that many epochs without improvement.

``augment`` (``random_shift(2)``, Hinton's jitter) gives the student and the teacher the same new
inputs every epoch, so the soft targets cover inputs beyond the training set; ``schedule="cosine"``
anneals the rate. Neither made the half-width digits CNN beat its labels-only twin on a validation
split (``benchmarks/results/compression.md``): both are options, not defaults.

>>> student, report = graphopt.distill(teacher, DigitsCNN(channels=8), (x_train, y_train), epochs=8)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from graphopt.compression.training import batches, train
from graphopt.errors import InputError


@dataclass
class DistillReport:
    """Loss per epoch, the teacher's and the student's scores (with ``eval``), their parameter counts."""

    temperature: float
    alpha: float
    losses: list[float] = field(default_factory=list)
    teacher_score: float | None = None
    student_scores: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    teacher_parameters: int = 0
    student_parameters: int = 0

    @property
    def student_score(self) -> float | None:
        return self.student_scores[self.best_epoch] if self.best_epoch is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "student_score": self.student_score}


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """Hinton's loss: the softened KL term (scaled by ``T**2``) and the labels' cross-entropy."""
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1), log_target=True,
        reduction="batchmean",
    )  # fmt: skip
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student, labels)


def distill(
    teacher: Any,
    student: nn.Module,
    train_data: Any,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 64,
    eval: Callable[[nn.Module], float] | None = None,
    patience: int | None = None,
    seed: int = 0,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    schedule: str = "constant",
) -> tuple[nn.Module, DistillReport]:
    """Train a copy of ``student`` to match ``teacher`` (an ``nn.Module`` or a ``graphopt.Graph``).

    Returns ``(trained student, report)``; neither the teacher nor the ``student`` given is modified.
    ``train_data``, ``augment`` and ``schedule`` as in ``graphopt.compression.training.train``; ``alpha=0``
    with the same other arguments is the labels-only baseline trained on exactly the same inputs.
    """
    if not temperature > 0 or not 0 <= alpha <= 1:
        raise InputError(f"temperature must be > 0 and alpha in [0, 1], got temperature={temperature}, alpha={alpha}")
    teacher_module = copy.deepcopy(getattr(teacher, "module", teacher)).eval()
    student = copy.deepcopy(student)
    _check_shapes(teacher_module, student, train_data, batch_size, seed)
    report = DistillReport(temperature, alpha)
    report.teacher_parameters = sum(p.numel() for p in teacher_module.parameters())
    report.student_parameters = sum(p.numel() for p in student.parameters())
    if eval is not None:
        report.teacher_score = float(eval(teacher_module))
    best: dict[str, torch.Tensor] | None = None

    def loss(inputs: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if alpha == 0:  # the labels-only baseline: the teacher's outputs would be multiplied by 0
            return F.cross_entropy(outputs, labels)
        with torch.no_grad():
            soft_targets = teacher_module(inputs)
        return distillation_loss(outputs, soft_targets, labels, temperature, alpha)

    def after_epoch(epoch: int) -> bool:
        nonlocal best
        if eval is None:
            return False
        student.eval()
        report.student_scores.append(float(eval(student)))
        student.train()
        if report.best_epoch is None or report.student_scores[-1] > report.student_scores[report.best_epoch]:
            report.best_epoch, best = epoch, copy.deepcopy(student.state_dict())
        return patience is not None and epoch - report.best_epoch >= patience

    student.train()
    trainable = [p for p in student.parameters() if p.requires_grad]
    report.losses = train(
        student, trainable, train_data, loss, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
        after_epoch=after_epoch, augment=augment, schedule=schedule,
    )  # fmt: skip
    if best is not None:
        student.load_state_dict(best)
    return student.eval(), report


def _check_shapes(teacher: nn.Module, student: nn.Module, train_data: Any, batch_size: int, seed: int) -> None:
    """The student's outputs have the teacher's shape on the first batch (else a one-line error)."""
    inputs, _ = next(iter(batches(train_data, batch_size, 0, seed)), (None, None))
    if inputs is None:
        raise InputError("train_data gave no batches")
    with torch.no_grad():
        was_training = student.training
        want, got = teacher(inputs[:2]), student.eval()(inputs[:2])
        student.train(was_training)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise InputError(
            f"the student's outputs have shape {shape}, the teacher's {tuple(want.shape)}: they must match"
        )
