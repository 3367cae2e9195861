"""The ``cpu`` target: LLVM for the host's x86-64 CPU, its vector extensions (AVX2, AVX-512) detected.

The LLVM target names the host CPU (``mcpu``, e.g. ``znver5``) so LLVM uses every vector extension
the host has; extensions that CPU model implies but the host does not report in ``/proc/cpuinfo``
(a hypervisor may hide AVX-512) are switched off in ``mattr``, so the library never executes an
instruction the machine lacks. Threads: ``num_cores`` option, else the runtime's count (``graphopt.targets.threads``: the user's
``TVM_NUM_THREADS``/``OMP_NUM_THREADS``, else one per physical core).

Scheduling is the performance work's seam: ``schedule_cpu.schedule_cpu(mod, target)``, or, with
``tune=True``, ``tuning.tune_cpu(mod, target, trials=..., tune_db=..., rpc=tune_rpc)`` (``tune_rpc=
"KEY@TRACKER_HOST:PORT"`` measures the candidates on the devices of a TVM RPC tracker).
"""

from __future__ import annotations

import platform
from typing import Any

import tvm
from tvm.target import codegen

from graphopt.errors import InputError
from graphopt.options import BuildOptions
from graphopt.targets.registry import TUNING_OUTCOME, TargetBackend, register_target
from graphopt.targets.runtime import cpuinfo_flags, normalize_feature
from graphopt.targets.threads import runtime_threads

#: Vector-ISA features worth recording and checking at load time (LLVM spelling).
VECTOR_FEATURES = (
    "sse4.1",
    "sse4.2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512cd",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512vnni",
    "avx512bf16",
    "avx512ifma",
    "avx512vbmi",
    "avxvnni",
    "amx-tile",
    "amx-int8",
    "amx-bf16",
)


def num_cores(options: dict[str, Any]) -> int:
    if options.get("num_cores"):
        return int(options["num_cores"])
    return runtime_threads()


def cpu_target(options: dict[str, Any]) -> tvm.target.Target:
    """The LLVM target for the host CPU (or ``options["mcpu"]``), with hidden extensions disabled."""
    mcpu = options.get("mcpu") or codegen.llvm_get_system_cpu()
    spec: dict[str, Any] = {"kind": "llvm", "mcpu": mcpu, "num-cores": num_cores(options)}
    if options.get("mattr"):  # a list, or one string "+avx2,-avx512f" (as --target-option gives it)
        mattr = options["mattr"]
        spec["mattr"] = [f.strip() for f in mattr.split(",") if f.strip()] if isinstance(mattr, str) else list(mattr)
    elif not options.get("mcpu"):
        flags = cpuinfo_flags()
        implied = codegen.llvm_get_cpu_features(tvm.target.Target(spec))
        hidden = [
            f for f in VECTOR_FEATURES if f in implied and flags is not None and normalize_feature(f) not in flags
        ]
        if hidden:
            spec["mattr"] = [f"-{f}" for f in hidden]
    try:
        return tvm.target.Target(spec)
    except Exception as error:
        raise InputError(f"invalid cpu target {spec}: {str(error).splitlines()[0]}") from error


def describe_cpu(target: tvm.target.Target) -> dict[str, Any]:
    """What the manifest records about a CPU target: model, vector features, threads, architecture."""
    features = codegen.llvm_get_cpu_features(target)
    return {
        "arch": platform.machine() or "x86_64",
        "mcpu": str(target.attrs.get("mcpu", "")),
        "num_cores": int(target.attrs.get("num-cores", 1)),
        "features": sorted(f for f in VECTOR_FEATURES if f in features),
        "vector_width_bits": int(codegen.llvm_get_vector_width(target)),
    }


def check_tuning_options(options: BuildOptions) -> None:
    """``tune_rpc`` is a tracker address ``KEY@HOST:PORT`` (``InputError``; that it needs ``tune``,
    ``BuildOptions`` checks). Run by ``check_build_request``, before capture: an unreachable tracker
    is found when tuning has work for it, and comes back wrapped in a ``BuildError``."""
    if options.tune_rpc:
        from graphopt.targets.runtime.rpc import parse_tracker_address

        parse_tracker_address(str(options.tune_rpc))


def schedule_for_cpu(mod: Any, target: tvm.target.Target, options: dict[str, Any]) -> Any:
    """The schedule step (given the module before legalization): tuning when asked for, else the
    default CPU schedules. Both are the performance work's (schedule_cpu.py, tuning.py)."""
    if options.get("tune"):
        from graphopt.targets.cpu.tuning import tune_cpu

        return tune_cpu(
            mod,
            target,
            trials=options.get("tune_trials", 64),
            tune_db=options.get("tune_db"),
            seconds=options.get("tune_seconds"),
            rpc=options.get("tune_rpc"),
            outcome=options.setdefault(TUNING_OUTCOME, {}),
        )
    from graphopt.targets.cpu.schedule import schedule_cpu

    return schedule_cpu(mod, target)


CPU = register_target(
    TargetBackend(
        name="cpu",
        make_target=cpu_target,
        schedule=schedule_for_cpu,
        device="cpu",
        describe=describe_cpu,
        check_options=check_tuning_options,
    )
)
