"""The ``cuda`` target: TVM's dlight GPU schedules, kernels compiled by nvcc, host code for this CPU.

Fused TIR functions get dlight's default GPU rules (matmul, GEMV, reductions, and a fallback that
binds any remaining loop nest to blocks and threads); an unscheduled function cannot run on a GPU
at all. nvcc compiles the kernels at build time, so the artifact builds on a machine without a GPU;
running it needs one (``tvm.cuda().exist``). Option ``cuda_arch`` (default ``sm_90``) picks the
GPU generation the kernels are compiled for.
"""

from __future__ import annotations

import shutil
from typing import Any

import tvm
from graphopt.targets.cpu import cpu_target, describe_cpu
from graphopt.targets.registry import TargetBackend, register_target
from tvm.s_tir import dlight

from graphopt.errors import GraphoptError, InputError

DEFAULT_ARCH = "sm_90"


def cuda_target(options: dict[str, Any]) -> tvm.target.Target:
    """``{"kind": "cuda", "arch": ...}`` with the host CPU's LLVM target as its host."""
    if shutil.which("nvcc") is None and not _cuda_home_nvcc():
        raise GraphoptError("the cuda target needs nvcc (the CUDA toolkit) to compile kernels; none was found")
    arch = options.get("cuda_arch", DEFAULT_ARCH)
    host = cpu_target(options)
    try:
        return tvm.target.Target({"kind": "cuda", "arch": arch}, host=host)
    except Exception as error:
        raise InputError(f"invalid cuda target (arch {arch!r}): {str(error).splitlines()[0]}") from error


def _cuda_home_nvcc() -> bool:
    import os

    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return os.path.exists(os.path.join(home, "bin", "nvcc"))


def schedule_for_gpu(mod: Any, target: tvm.target.Target, options: dict[str, Any]) -> Any:
    """dlight's default GPU schedule rules, most specific first."""
    return dlight.ApplyDefaultSchedule(
        dlight.gpu.Matmul(),
        dlight.gpu.GEMV(),
        dlight.gpu.Reduction(),
        dlight.gpu.GeneralReduction(),
        dlight.gpu.Fallback(),
    )(mod)


def describe_cuda(target: tvm.target.Target) -> dict[str, Any]:
    return {
        "arch": describe_cpu(target.host)["arch"],
        "cuda_arch": str(target.attrs.get("arch", "")),
        "max_num_threads": int(target.attrs.get("max_num_threads", 0)),
        "host": describe_cpu(target.host),
    }


CUDA = register_target(
    TargetBackend(
        name="cuda",
        make_target=cuda_target,
        schedule=schedule_for_gpu,
        device="cuda",
        describe=describe_cuda,
    )
)
