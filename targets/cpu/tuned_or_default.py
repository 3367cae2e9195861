"""Keep a tuned build only if the whole model runs faster with it than with the default schedules.

MetaSchedule measures each candidate kernel alone, on warm caches and random inputs. A kernel that
wins there can lose inside the model: EfficientNet-B0 tuned with 320 trials had 7 kernels 4-26%
faster by those measurements and ran 2-6% slower end to end (3.57 against 3.49 ms, AMD EPYC Zen 5,
2 threads), the kernels' thread splits and layouts meeting their neighbours' differently than the
defaults, which all split the same way. So both builds are compiled and timed interleaved on one
set of random inputs, and the tuned one is kept only when it is faster by ``MARGIN``; ``outcome``
says which and both times (the manifest's ``build.tuning``).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.target import Target

ROUNDS = 7
# Two builds of the same schedules timed so differ by up to ~4% here (EfficientNet-B0, 3.68 vs 3.90
# ms): the tuned build must be this much faster to be kept, so a tie keeps the default schedules.
MARGIN = 0.02


def static_inputs(mod: tvm.IRModule) -> list[Any] | None:
    """Random tensors for ``main``'s parameters (zeros for integer and bool ones: token ids and masks
    stay valid), or None when a parameter is not a tensor of static shape."""
    rng = np.random.default_rng(0)
    tensors = []
    for param in mod["main"].params:
        ty = param.ty
        shape = getattr(ty, "shape", None)
        if shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape):
            return None
        dims, dtype = [int(d) for d in shape], str(ty.dtype)
        array = (
            rng.uniform(-1, 1, dims).astype(dtype) if dtype.startswith(("float", "bfloat")) else np.zeros(dims, dtype)
        )
        tensors.append(tvm.runtime.tensor(array))
    return tensors


def _executable(mod: tvm.IRModule, target: Target) -> Any:
    """``mod`` (scheduled) through the rest of the Relax pipeline, as the build will compile it."""
    from graphopt.targets.pipeline.relax_pipeline import tvm_pass_lists

    passes = tvm_pass_lists(target)
    with target:
        rest = tvm.transform.Sequential(passes.dataflow_lower_passes(target) + passes.finalize_passes(target))
        return tvm.compile(mod, target, relax_pipeline=rest)


def interleaved_ms(executables: list[Any], inputs: list[Any], rounds: int = ROUNDS) -> list[float]:
    """Median milliseconds per run of each executable's ``main``, timed in alternation."""
    device = tvm.cpu()
    timers = [
        relax.VirtualMachine(e, device).time_evaluator("main", device, number=1, min_repeat_ms=50) for e in executables
    ]
    for timer in timers:
        timer(*inputs)  # warm up
    runs: list[list[float]] = [[] for _ in timers]
    for _ in range(rounds):
        for timer, times in zip(timers, runs, strict=True):
            times.append(timer(*inputs).mean * 1e3)
    return [statistics.median(times) for times in runs]


def tuned_or_default(
    tuned: tvm.IRModule, default: tvm.IRModule, target: Target, outcome: dict[str, Any] | None = None
) -> tvm.IRModule:
    """``tuned`` if the whole model runs faster with it than with ``default``, else ``default``."""
    record = outcome if outcome is not None else {}
    if tvm_ffi.structural_equal(tuned, default):
        record.update(kept="default", reason="every kernel's best record is its default schedule")
        return default
    inputs = static_inputs(tuned)
    if inputs is None:
        record.update(kept="tuned", reason="not timed end to end: the model's input shapes are not static")
        return tuned
    default_ms, tuned_ms = interleaved_ms([_executable(default, target), _executable(tuned, target)], inputs)
    faster = tuned_ms < default_ms * (1 - MARGIN)
    record.update(
        kept="tuned" if faster else "default",
        tuned_ms=round(float(tuned_ms), 4),
        default_ms=round(float(default_ms), 4),
    )
    return tuned if faster else default
