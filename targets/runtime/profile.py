"""Where a compiled model's time goes: every kernel call of a run, timed inside the Relax VM.

TVM 0.27's Relax VM has no profiler, but its instrument hook (``VirtualMachine.set_instrument``) is
called before and after every Call instruction the VM executes: enough to time each kernel call
with the host clock (after a device sync on GPUs). The VM's own builtins (allocation, shape checks)
are summed in one row, so the table adds up to the instrumented run. The hook (a Python call that
receives every argument) costs a few microseconds per call, inside each measured call too: the
median builtin call, which does next to nothing, measures it, and a note states it;
``KernelProfile.whole_ms`` is the model timed without the hook, to compare.

Each kernel names the graph nodes it computes (``Manifest.kernel_nodes``, followed through the
lowering by ``targets/pipeline/kernel_nodes.py``): what ``graphopt viz --profile`` colours.

GFLOP/s uses the FLOPs per call the builder estimated for each scheduled kernel
(``Manifest.kernel_flops``; artifacts built before it was recorded show none).

>>> profile = graphopt.load("out/resnet").profile(x, runs=20)
>>> profile.kernels[0].name, profile.kernels[0].ms, profile.kernels[0].gflops
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tvm.runtime.vm import VirtualMachine

if TYPE_CHECKING:
    from graphopt.targets.runtime import CompiledModel

RUNTIME_ROW = "(VM builtins: allocation, shape checks, and the hook)"  #: the row summing the VM's own calls


@dataclass(frozen=True)
class KernelTime:
    """One kernel's share of a run: calls per run, milliseconds per run (all its calls together)."""

    name: str
    calls: int
    ms: float
    flops: int | None = None  #: per run (all calls), when the builder recorded it
    call_nodes: tuple[tuple[str, ...], ...] = ()  #: each call's graph nodes (``Manifest.kernel_nodes``)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every graph node its calls compute, in order (none: a layout transform, a copy, the VM)."""
        return tuple(dict.fromkeys(n for call in self.call_nodes for n in call))

    @property
    def gflops(self) -> float | None:
        """Achieved GFLOP/s, or None where the FLOPs are unknown or the time is zero."""
        return self.flops / (self.ms * 1e6) if self.flops and self.ms > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "calls": self.calls,
            "ms": self.ms,
            "flops": self.flops,
            "gflops": self.gflops,
            "nodes": list(self.nodes),
            "call_nodes": [list(call) for call in self.call_nodes],
        }


@dataclass(frozen=True)
class KernelProfile:
    """The kernels of one compiled model, slowest first, with the model's own time beside them."""

    kernels: list[KernelTime]
    whole_ms: float  #: one run timed without the instrument hook (TVM's time_evaluator)
    runs: int  #: instrumented runs averaged
    notes: list[str] = field(default_factory=list)

    @property
    def kernel_ms(self) -> float:
        """The sum of the rows: one instrumented run."""
        return sum(k.ms for k in self.kernels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "whole_ms": self.whole_ms,
            "kernel_ms": self.kernel_ms,
            "kernels": [k.to_dict() for k in self.kernels],
            "notes": list(self.notes),
        }


def profile_model(model: CompiledModel, *args: Any, runs: int = 10, warmup: int = 2) -> KernelProfile:
    """Time every kernel call of ``runs`` runs of ``model`` on ``args`` (after ``warmup`` runs)."""
    tensors = model.prepare(*args)
    weights = model._prepared_weights()
    device = model.device
    sync = device.sync if model.manifest.target.device != "cpu" else None
    vm = VirtualMachine(model.module, device)
    main = vm["main"]
    for _ in range(warmup):
        main(*tensors, *weights)
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    started: list[float] = []
    builtin_seconds: list[float] = []

    def instrument(_func: Any, name: str, before: bool, _ret: Any, *_args: Any) -> int:
        if before:
            if sync:
                sync()
            started.append(time.perf_counter())
        else:
            if sync:
                sync()
            seconds = time.perf_counter() - started.pop()
            builtin = name.startswith("vm.builtin.")
            if builtin:
                builtin_seconds.append(seconds)
            key = RUNTIME_ROW if builtin else name
            totals[key] += seconds
            calls[key] += 1
        return 0  # VMInstrumentReturnKind.kNoOp: run the call as usual

    vm.set_instrument(instrument)
    for _ in range(runs):
        main(*tensors, *weights)
    known = model.manifest.kernel_flops
    nodes = model.manifest.kernel_nodes
    kernels = [
        KernelTime(
            name,
            round(calls[name] / runs),
            seconds * 1e3 / runs,
            known[name] * calls[name] // runs if name in known else None,
            tuple(tuple(call) for call in nodes.get(name, ())),
        )
        for name, seconds in totals.items()
    ]
    kernels.sort(key=lambda k: k.ms, reverse=True)
    whole = statistics.median(model.time(*args, number=max(1, runs), repeat=3)) * 1e3
    notes = []
    if builtin_seconds:
        notes.append(
            f"the timing hook adds about {statistics.median(builtin_seconds) * 1e6:.1f} us to every call "
            "(the median VM builtin's time): kernels of a few microseconds read slower than they run"
        )
    if not known:
        notes.append("this artifact records no kernel FLOPs (built before they were kept): no GFLOP/s")
    return KernelProfile(kernels, whole, runs, notes)
