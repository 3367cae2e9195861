"""The ``arm`` target: aarch64 with NEON, cross-compiled on this (x86) machine and run under qemu-user.

Why it works without an ARM machine: TVM's LLVM backend emits aarch64 code for the target
``{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}``, and Debian's cross compiler
(``aarch64-linux-gnu-g++``) links it into an AArch64 shared object. That ``.so`` is the artifact's
library: copy it to a 64-bit ARM Linux board with the TVM runtime and it runs there.

To check it here, ``build(target="arm")`` returns a ``QemuCompiledModel``: calling it (or
``run_on_qemu(artifact_dir, inputs)``) runs the library under ``qemu-aarch64`` through ``graphopt_runner``,
a small C++ program (``targets/arm/runner/runner.cc``) cross-compiled against the aarch64 TVM runtime
(``libtvm_runtime.so`` + ``libtvm_ffi.so`` from PyPI's manylinux aarch64 apache-tvm wheels). It loads
the library, starts the Relax VM on the CPU with the pooled allocator, calls ``main`` and writes the
outputs back, so the comparison with PyTorch eager exercises the real aarch64 code.

Set-up, once per machine (root, ~1 minute; a quick no-op afterwards):

    bash scripts/setup_arm.sh

It apt-installs ``g++-aarch64-linux-gnu`` and ``qemu-user``, unpacks the aarch64 runtime into
``$GRAPHOPT_ARM_RUNTIME`` (default ``${XDG_CACHE_HOME:-~/.cache}/graphopt/aarch64-runtime``) and builds
the runner there. Building needs only the cross compiler; running on qemu needs all three.

Target options (``graphopt.compile(..., target="arm", arm_mattr=[...], arm_mcpu=...)``): ``arm_mattr``
replaces the default ``["+neon"]`` (e.g. ``["+neon", "+dotprod"]`` for int8 dot products on
Cortex-A55/A76 and later: quantized matmuls and convs then run on ``sdot``, targets/arm/dot.py), ``arm_mcpu`` names a core (``"cortex-a72"``), ``arm_num_cores`` sets the
number of threads the schedules assume.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from graphopt.errors import ArtifactError, GraphoptError, InputError
from graphopt.options import BuildOptions
from graphopt.targets.pipeline.artifact import LINK_OPTIONS
from graphopt.targets.registry import TargetBackend, register_target
from graphopt.targets.runtime import (
    MANIFEST,
    CompiledModel,
    Manifest,
    check_inputs,
    dim_bounds,
    packed_library,
    read_weights,
)

CROSS_COMPILER = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
SETUP_SCRIPT = "scripts/setup_arm.sh"
DEFAULT_MATTR = ("+neon",)
ELF_MACHINE_AARCH64 = 183
RUNNER_NAME = "graphopt_runner"


class ToolchainError(GraphoptError):
    """A tool the arm target needs (cross compiler, qemu, aarch64 runtime) is not installed."""


def target_dict(
    mattr: Sequence[str] | None = None, mcpu: str | None = None, num_cores: int | None = None
) -> dict[str, Any]:
    """The TVM 0.27 target (a JSON dict) for aarch64 Linux; ``mattr`` defaults to NEON.

    >>> target_dict(mattr=["+neon", "+dotprod"])["mattr"]
    ['+neon', '+dotprod']
    """
    target: dict[str, Any] = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": list(mattr or DEFAULT_MATTR)}
    if mcpu:
        target["mcpu"] = mcpu
    if num_cores:
        target["num-cores"] = int(num_cores)
    return target


def target_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """The target dict for ``build()``'s options: ``arm_mattr`` (a list or "+neon,+dotprod"), ``arm_mcpu``,
    ``arm_num_cores``; the unprefixed ``mattr``/``mcpu``/``num_cores`` are accepted too."""

    def option(name: str) -> Any:
        return options.get(f"arm_{name}") or options.get(name)

    mattr = option("mattr")
    if isinstance(mattr, str):
        mattr = [part.strip() for part in mattr.split(",") if part.strip()]
    return target_dict(mattr=mattr, mcpu=option("mcpu"), num_cores=option("num_cores"))


def runtime_dir() -> Path:
    """Where setup_arm.sh put the aarch64 TVM runtime and the runner (``$GRAPHOPT_ARM_RUNTIME``)."""
    if os.environ.get("GRAPHOPT_ARM_RUNTIME"):
        return Path(os.environ["GRAPHOPT_ARM_RUNTIME"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "graphopt" / "aarch64-runtime"


def missing_tools(*, to_run: bool = True) -> list[str]:
    """Names of what is not installed: the cross compiler, and (``to_run``) qemu and the aarch64 runner."""
    missing = [] if shutil.which(CROSS_COMPILER) else [CROSS_COMPILER]
    if to_run:
        if not shutil.which(QEMU):
            missing.append(QEMU)
        if not (runtime_dir() / "bin" / RUNNER_NAME).is_file():
            missing.append(f"the aarch64 TVM runtime and {RUNNER_NAME} in {runtime_dir()}")
        elif not _runner_is_current():
            missing.append(f"{RUNNER_NAME} built from this checkout's {RUNNER_SOURCE.name} (it was built from another)")
    return missing


#: The runner's source; setup_arm.sh records the first 16 hex digits of its sha256 in the stamp.
RUNNER_SOURCE = Path(__file__).resolve().parent / "runner" / "runner.cc"


def _runner_is_current() -> bool:
    """Whether setup_arm.sh's stamp names this checkout's runner source (another checkout sharing the
    cache may have rebuilt the runner from an older one, without ``--weights``)."""
    stamp = runtime_dir() / ".setup-stamp"
    if not stamp.is_file() or not RUNNER_SOURCE.is_file():
        return True  # a hand-made runtime directory: nothing to compare
    digest = hashlib.sha256(RUNNER_SOURCE.read_bytes()).hexdigest()[:16]
    return f"runner={digest}" in stamp.read_text()


def require_tools(*, to_run: bool = True) -> None:
    """Raise one clear line naming what is missing and how to install it."""
    missing = missing_tools(to_run=to_run)
    if missing:
        raise ToolchainError(f"target 'arm' needs {', '.join(missing)}: run `sudo bash {SETUP_SCRIPT}`")


def check_options(options: BuildOptions) -> None:
    """Refuse tuning: MetaSchedule measures candidates, and there is no aarch64 machine to measure on."""
    if options.tune:
        raise InputError("tuning for target 'arm' needs an aarch64 machine to measure on: build without --tune")


def make_target(options: dict[str, Any]) -> Any:
    """The ``tvm.target.Target`` for ``build()``'s options; fails fast if the cross compiler is missing."""
    import tvm

    require_tools(to_run=False)
    spec = target_from_options(options)
    try:
        return tvm.target.Target(spec)
    except Exception as error:
        raise InputError(f"invalid arm target {spec}: {str(error).strip().splitlines()[0]}") from error


def schedule(mod: Any, target: Any, options: dict[str, Any]) -> Any:
    """The CPU default schedules, which read the vector width (4 fp32 lanes on NEON) from the target."""
    from graphopt.targets.cpu.schedule import schedule_cpu

    return schedule_cpu(mod, target)


def describe(target: Any) -> dict[str, Any]:
    """What the manifest records about the target and how to run the artifact."""
    return {
        "arch": "aarch64",  # load_artifact refuses it on x86 with a clear message
        "triple": str(target.attrs.get("mtriple", "aarch64-linux-gnu")),
        "mattr": [str(feature) for feature in target.attrs.get("mattr", [])],
        "mcpu": str(target.attrs["mcpu"]) if "mcpu" in target.attrs else None,
        "runs_with": "the aarch64 TVM runtime; on x86 under qemu-aarch64 (graphopt.targets.arm.run_on_qemu)",
    }


def export_library(executable: Any, path: str | Path) -> Path:
    """Link a compiled Relax executable into an AArch64 shared object with the cross compiler."""
    require_tools(to_run=False)
    path = Path(path)
    executable.export_library(str(path), cc=CROSS_COMPILER, options=LINK_OPTIONS)
    return path


def build_arm(mod: Any, out_dir: str | Path, options: dict[str, Any] | None = None) -> Path:
    """Compile a lowered Relax IRModule for aarch64 and write ``out_dir/model.so``; return its path.

    For callers holding a module from ``lower_to_relax``; ``graphopt.targets.build(target="arm")``
    reaches the same steps through the registered backend. ``options``: ``arm_mattr``, ``arm_mcpu``,
    ``arm_num_cores``.
    """
    from graphopt.targets.pipeline.relax_pipeline import compile_module

    options = options or {}
    target = make_target(options)
    executable = compile_module(mod, ARM, target, options)
    return export_library(executable, Path(out_dir) / "model.so")


def elf_machine(path: str | Path) -> int:
    """``e_machine`` of an ELF file (183 = AArch64, 62 = x86-64); raise ArtifactError if not ELF."""
    header = Path(path).read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        raise ArtifactError(f"{path} is not an ELF shared object")
    byteorder: Literal["little", "big"] = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byteorder)


def _library_path(artifact: str | Path, scratch: str | Path) -> Path:
    """The aarch64 library of an artifact directory (the manifest's ``library``; a packed one unpacked
    into ``scratch``), or the ``.so`` itself."""
    artifact = Path(artifact)
    if artifact.is_file():
        return artifact
    if (artifact / MANIFEST).is_file():
        manifest = Manifest.read(artifact)
        library = str(manifest.library)
        if not packed_library.is_packed(library):
            return artifact / library
        return packed_library.unpack_into(artifact / library, manifest.extra.get(packed_library.ENTRY), Path(scratch))
    libraries = sorted(artifact.glob("*.so"))
    if len(libraries) != 1:
        raise ArtifactError(f"expected one .so in {artifact}, found {[p.name for p in libraries]}")
    return libraries[0]


@dataclass
class QemuRun:
    """What one run under qemu gave: the outputs, the time of the VM's ``main`` call, the whole wall time."""

    outputs: list[np.ndarray]
    main_ms: float
    wall_s: float


def qemu_run(
    artifact: str | Path, inputs: Sequence[Any], *, weights: Sequence[np.ndarray] = (), timeout_s: float = 300
) -> QemuRun:
    """Run an aarch64 artifact once under qemu-aarch64 on ``inputs`` (numpy arrays or tensors).

    ``weights``: a compressed artifact's decoded weights, which the runner prepares with
    ``main_transform_params`` and passes to ``main`` after the inputs."""
    with tempfile.TemporaryDirectory(prefix="graphopt-qemu-") as work:
        library = _library_path(artifact, work)
        if elf_machine(library) != ELF_MACHINE_AARCH64:
            raise ArtifactError(f"{library} is not an AArch64 library (was it built with target='arm'?)")
        require_tools(to_run=True)
        specs = []
        for index, value in enumerate([*inputs, *weights]):
            array = np.ascontiguousarray(value.numpy() if hasattr(value, "numpy") else value)
            path = Path(work) / f"input_{index}.bin"
            array.tofile(path)
            specs.append(f"{path}:{array.dtype.name}:{'x'.join(map(str, array.shape))}")
        marker = [f"--weights={len(weights)}"] if weights else []
        command = [QEMU, str(runtime_dir() / "bin" / RUNNER_NAME), str(library), work, *marker, *specs]
        env = {**os.environ, "QEMU_LD_PREFIX": SYSROOT}
        start = time.perf_counter()
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as error:
            raise ArtifactError(f"running {library.name} under {QEMU} took longer than {timeout_s:g} s") from error
        wall_s = time.perf_counter() - start
        if done.returncode != 0:
            last_line = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise ArtifactError(f"running {library.name} under {QEMU} failed (exit {done.returncode}): {last_line}")
        outputs = []
        index_lines = (Path(work) / "outputs.txt").read_text().splitlines()
        for index, line in enumerate(index_lines):
            dtype, _, shape = line.partition(" ")
            dims = tuple(int(dim) for dim in shape.split("x") if dim)
            outputs.append(np.fromfile(Path(work) / f"output_{index}.bin", dtype=np.dtype(dtype)).reshape(dims))
        main_ms = float(done.stdout.split("run_ms")[-1].split()[0])
    return QemuRun(outputs, main_ms, wall_s)


def run_on_qemu(artifact: str | Path, inputs: Sequence[Any], weights: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Outputs of an aarch64 artifact (directory or ``.so``) run under qemu on ``inputs``; a compressed
    artifact directory's weights are read from it (decoded on this machine) unless given.

    >>> run_on_qemu("out/mlp_arm", [np.zeros((1, 784), np.float32)])[0].shape
    (1, 10)
    """
    if not weights and Path(artifact).is_dir():
        manifest = Manifest.read(Path(artifact))
        weights = read_weights(Path(artifact), manifest) if manifest.weights else []
    return qemu_run(artifact, inputs, weights=weights).outputs


class QemuCompiledModel(CompiledModel):
    """An ``arm`` build as a ``CompiledModel`` on this x86 machine: each call runs it under qemu-aarch64.

    ``build(target="arm")`` returns one (the registry's ``model_class`` hook), so
    ``graphopt.compile(..., target="arm")(x)`` and the CLI's check against eager run the real aarch64
    code. Without an ``out_dir`` the library is exported to a temporary directory on the first call.

    >>> model = graphopt.compile(MnistMLP().eval(), x, target="arm", out_dir="out/arm")
    >>> model(x.numpy()).shape
    (1, 10)
    """

    def __init__(self, compiled: CompiledModel) -> None:
        super().__init__(compiled.module, compiled.manifest, out_dir=compiled.out_dir, report=compiled.report)
        self.raw_weights = compiled.raw_weights  # a compressed build's: the runner prepares them under qemu
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._library = Path()

    def library(self) -> Path:
        """The aarch64 ``.so`` the calls run (a packed artifact's unpacked into a scratch directory)."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="graphopt-arm-")
            if self.out_dir is None:
                export_library(self.module, Path(self._scratch.name) / "model.so")
                self._library = Path(self._scratch.name) / "model.so"
            else:
                self._library = _library_path(self.out_dir, self._scratch.name)
        return self._library

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs = check_inputs(self.inputs, args, kwargs, dim_bounds(self.manifest))
        outputs = run_on_qemu(self.library(), inputs, self.raw_weights or [])
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def time(self, *args: Any, number: int = 10, repeat: int = 3) -> list[float]:
        raise ArtifactError(
            "an arm artifact runs here only under qemu, whose timings say nothing about an ARM CPU: "
            "time it on an aarch64 machine with graphopt.load"
        )


ARM = register_target(
    TargetBackend(
        name="arm",
        make_target=make_target,
        schedule=schedule,
        export_library=export_library,
        describe=describe,
        runs_on_host=False,
        check_options=check_options,
        extra={"model_class": QemuCompiledModel, "run": run_on_qemu, "elf_machine": ELF_MACHINE_AARCH64},
    )
)
