"""The training data every compression step that trains takes, and the loop they share.

``train_data`` is one of: a pair of tensors ``(inputs, labels)`` (shuffled, seeded, into batches of
``batch_size``); an iterable of ``(inputs, labels)`` batches, iterated again every epoch (a list, a
``DataLoader``); or a function returning such an iterable. Whatever it yields is checked: a function
that raises, or a batch that is not an (inputs, labels) pair of tensors with one label per input,
is an ``InputError`` of one line, before anything is trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from graphopt.errors import InputError

Batch = tuple[torch.Tensor, torch.Tensor]


def batches(train_data: Any, batch_size: int, epoch: int, seed: int) -> Iterator[Batch]:
    """The batches of one epoch, each checked."""
    for number, batch in enumerate(_raw_batches(train_data, batch_size, epoch, seed)):
        yield check_batch(batch, number)


def _raw_batches(train_data: Any, batch_size: int, epoch: int, seed: int) -> Iterable[Any]:
    if _is_tensor_pair(train_data):
        inputs, labels = train_data
        if len(inputs) != len(labels):
            raise InputError(f"train_data has {len(inputs)} inputs and {len(labels)} labels")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + epoch))
        return (
            (inputs[order[i : i + batch_size]], labels[order[i : i + batch_size]])
            for i in range(0, len(order), batch_size)
        )
    source = train_data
    if callable(train_data):
        try:
            source = train_data()
        except Exception as error:
            raise InputError(f"the train_data function raised {type(error).__name__}: {_first_line(error)}") from error
    if isinstance(source, Iterator):  # would be empty at the second epoch
        raise InputError("train_data is a one-shot iterator: give a list, a DataLoader or a function returning one")
    if not isinstance(source, Iterable):
        raise InputError(
            f"train_data must be (inputs, labels), batches of them or a function; got {type(source).__name__}"
        )
    return _guarded(source)


def _guarded(source: Iterable[Any]) -> Iterator[Any]:
    iterator = iter(source)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            raise InputError(f"train_data raised {type(error).__name__}: {_first_line(error)}") from error
        yield batch


def _is_tensor_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, torch.Tensor) for v in value)


def check_batch(batch: Any, number: int) -> Batch:
    if not _is_tensor_pair(batch):
        raise InputError(f"train_data batch {number} is a {type(batch).__name__}, expected (inputs, labels) tensors")
    inputs, labels = batch
    if inputs.dim() == 0 or len(inputs) != len(labels):
        raise InputError(
            f"train_data batch {number}: inputs of shape {tuple(inputs.shape)} and labels of shape "
            f"{tuple(labels.shape)} (one label per input expected)"
        )
    return inputs, labels


def check_outputs(outputs: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    """Class logits ``N x C`` for ``N`` integer labels below ``C``."""
    if outputs.dim() != 2 or len(outputs) != len(labels) or labels.dim() != 1:
        raise InputError(
            f"{what} gives outputs of shape {tuple(outputs.shape)} for labels of shape {tuple(labels.shape)}: "
            "expected N x classes logits and N labels"
        )
    if labels.dtype.is_floating_point or labels.min() < 0 or labels.max() >= outputs.shape[1]:
        raise InputError(
            f"labels must be integers in 0..{outputs.shape[1] - 1} for {what}'s {outputs.shape[1]} outputs"
        )


def train(
    module: torch.nn.Module,
    tensors: Sequence[torch.Tensor],
    train_data: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    after_step: Callable[[], None] = lambda: None,
    after_epoch: Callable[[int], bool] = lambda epoch: False,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    schedule: str = "constant",
) -> list[float]:
    """Adam over ``tensors``; ``loss_fn(inputs, outputs, labels)``; returns the mean loss of each epoch.

    ``after_step`` runs after every optimizer step (re-imposing zeros, codebooks), ``after_epoch(epoch)``
    after every epoch (evaluation) and stops the training by returning True. ``augment`` maps each
    batch's inputs to new inputs of the same labels (random shifts) before the model and ``loss_fn``
    see them, drawing from torch's generator, seeded here: the same seed gives the same inputs.
    ``schedule`` is ``"constant"`` or ``"cosine"`` (the rate annealed from ``lr`` to 0 over the epochs,
    per step where the number of batches is known, else per epoch).
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise InputError(f"epochs must be a non-negative integer, got {epochs!r}")
    if schedule not in SCHEDULES:
        raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(tensors, lr=lr)
    steps = _steps_per_epoch(train_data, batch_size)
    losses = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for step, (inputs, labels) in enumerate(batches(train_data, batch_size, epoch, seed)):
            if schedule == "cosine":
                _set_lr(optimizer, lr * _cosine(epoch + (step / steps if steps else 0.0), epochs))
            if augment is not None:
                inputs = _augmented(augment, inputs, number=step)
            optimizer.zero_grad()
            outputs = module(inputs)
            if epoch == 0 and count == 0:
                check_outputs(outputs, labels, type(module).__name__)
            loss = loss_fn(inputs, outputs, labels)
            loss.backward()
            optimizer.step()
            after_step()
            total, count = total + float(loss.detach()) * len(labels), count + len(labels)
        if count == 0:
            raise InputError("train_data gave no batches")
        losses.append(total / count)
        if after_epoch(epoch):
            break
    return losses


SCHEDULES = ("constant", "cosine")


def _cosine(progress: float, epochs: int) -> float:
    """The fraction of the initial rate at ``progress`` epochs of ``epochs``: 1 at the start, 0 at the end."""
    return 0.5 * (1 + math.cos(math.pi * min(progress / epochs, 1.0)))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _steps_per_epoch(train_data: Any, batch_size: int) -> int | None:
    if _is_tensor_pair(train_data):
        return -(-len(train_data[1]) // batch_size)
    return None


def _augmented(augment: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, number: int) -> torch.Tensor:
    try:
        result = augment(inputs)
    except Exception as error:
        raise InputError(f"augment raised {type(error).__name__} on batch {number}: {_first_line(error)}") from error
    if not isinstance(result, torch.Tensor) or result.shape != inputs.shape:
        shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise InputError(f"augment turned inputs of shape {tuple(inputs.shape)} into {shape}: the shape must stay")
    return result


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""
