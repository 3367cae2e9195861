"""The ``cuda`` target: TVM's dlight GPU schedules, kernels compiled by nvcc, host code for this CPU.

Fused TIR functions get dlight's default GPU rules (matmul, GEMV, reductions, and a fallback that
binds any remaining loop nest to blocks and threads); an unscheduled function cannot run on a GPU
at all. nvcc compiles the kernels at build time, so the artifact builds on a machine without a GPU;
running it needs one (``tvm.cuda().exist``). Option ``cuda_arch`` (default ``sm_90``) picks the
GPU generation the kernels are compiled for.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import Any

import tvm
from tvm.s_tir import dlight

from graphopt.errors import GraphoptError, InputError
from graphopt.options import BuildOptions
from graphopt.targets.cpu import cpu_target, describe_cpu
from graphopt.targets.pipeline.relax_pipeline import fuse_passes
from graphopt.targets.registry import TargetBackend, register_target

DEFAULT_ARCH = "sm_90"


def check_options(options: BuildOptions) -> None:
    """Refuse tuning: MetaSchedule would need the GPU to measure on; say so, never ignore it."""
    if options.tune:
        raise InputError("tuning for target 'cuda' is not supported yet: build without --tune (dlight schedules)")


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
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    return os.path.exists(os.path.join(home, "bin", "nvcc"))


def schedule_for_gpu(mod: Any, target: tvm.target.Target, options: dict[str, Any]) -> Any:
    """TVM's fusion, then dlight's default GPU schedule rules, most specific first."""
    mod = tvm.transform.Sequential(fuse_passes())(mod)
    return dlight.ApplyDefaultSchedule(
        dlight.gpu.Matmul(),
        dlight.gpu.GEMV(),
        dlight.gpu.Reduction(),
        dlight.gpu.GeneralReduction(),
        dlight.gpu.Fallback(),
    )(mod)


def cuda_modules(module: Any) -> list[Any]:
    """The CUDA modules imported by a built library (an Executable's ``mod`` or a loaded module)."""
    found = [module] if module.kind == "cuda" else []
    for imported in module.imports:
        found.extend(cuda_modules(imported))
    return found


def kernel_names(source: str) -> list[str]:
    names = re.findall(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(', source)
    return list(dict.fromkeys(names))  # a kernel is declared, then defined: once each


def compile_kernels(source: str, target: tvm.target.Target) -> bytes:
    """nvcc the kernels to a fatbin for the target's GPU generation, without fast-math shortcuts."""
    from tvm.support import nvcc

    arch = str(target.attrs.get("arch", DEFAULT_ARCH))
    number = arch.removeprefix("sm_")
    gencode = ["-gencode", f"arch=compute_{number},code=[sm_{number},compute_{number}]"]
    previous = os.environ.get("TVM_CUDA_NVCC_NO_FAST_MATH")
    os.environ["TVM_CUDA_NVCC_NO_FAST_MATH"] = "1"
    try:
        with target:
            return bytes(nvcc.compile_cuda(source, target_format="fatbin", arch=gencode, compiler="nvcc"))
    finally:
        if previous is None:
            os.environ.pop("TVM_CUDA_NVCC_NO_FAST_MATH", None)
        else:
            os.environ["TVM_CUDA_NVCC_NO_FAST_MATH"] = previous


def package_kernels(executable: Any, target: tvm.target.Target, directory: str) -> dict[str, Any]:
    """Compile the kernels with nvcc and write them beside the library (``cuda_kernels_N.fatbin``).

    TVM keeps CUDA kernels as source inside the library and compiles them when it is loaded; the
    fatbins let the runtime use these nvcc-built kernels instead (see ``runtime``), and building
    them here proves the kernels compile for the target GPU even on a machine without one.
    """
    sources = [m.inspect_source("cuda") for m in cuda_modules(executable.mod)]
    if not any(sources):
        raise GraphoptError("the cuda build produced no CUDA kernels")
    entries = []
    for index, source in enumerate(sources):
        name = f"cuda_kernels_{index}.fatbin"
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(compile_kernels(source, target))
        entries.append(
            {
                "file": name,
                "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
                "kernels": kernel_names(source),
                "arch": str(target.attrs.get("arch", DEFAULT_ARCH)),
                "compiler": "nvcc",
            }
        )
    return {"cuda_kernels": entries}


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
        package=package_kernels,
        check_options=check_options,
    )
)
