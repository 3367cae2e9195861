"""Re-estimate BatchNorm statistics after pruning (adaptive BN, Li et al., EagleEye 2020).

Removing input channels of a convolution shifts the mean and variance of its output, but the
BatchNorm after it still normalizes with the unpruned model's running statistics: a pruned
network can then look broken (a digits ResNet at 50% FLOPs read ~10% top-1 as pruned) when it
only needs its statistics re-measured. ``recalibrate`` runs a few batches of unlabelled inputs
through the pruned module with only its BatchNorms in training mode and ``momentum=None`` (the
plain average of the batches seen), weights untouched, no gradients. A sensitivity curve measured
this way ranks a group by what its channels carry, not by how far the removal moves the
statistics downstream, and recovery starts from a working network.

>>> graphopt.pruning.recalibrate(pruned.module, x_train[:256])
"""

from __future__ import annotations

from typing import Any

import torch

from graphopt.errors import InputError


def batch_norms(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def recalibrate(module: torch.nn.Module, inputs: Any, *, batch_size: int = 64) -> torch.nn.Module:
    """Reset and re-measure the running statistics of every BatchNorm in ``module`` on ``inputs``.

    ``inputs`` is a tensor (split into batches of ``batch_size``) or an iterable of batches (a
    tensor, or an ``(inputs, labels)`` pair whose labels are ignored). The module is left in eval
    mode; a module without BatchNorm is returned unchanged.
    """
    norms = batch_norms(module)
    if not norms:
        return module
    if isinstance(inputs, torch.Tensor):
        if len(inputs) == 0:
            raise InputError("recalibration inputs are empty")
        source: Any = inputs.split(batch_size)
    else:
        source = inputs
    saved = [(m, m.momentum) for m in norms]
    module.eval()
    seen = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
            m.train()
        with torch.no_grad():
            for batch in source:
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                module(batch)
                seen += 1
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        module.eval()
    if seen == 0:
        raise InputError("recalibration inputs gave no batches")
    return module
