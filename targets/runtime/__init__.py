"""Load and run a graphopt artifact with the TVM runtime alone: no torch, no graphopt passes.

An artifact directory holds the compiled library (parameters bound inside it as constants; ``model.so``,
or ``model.so.xz`` with ``pack_library``: see ``packed_library``) and
``manifest.json``: inputs and outputs (names, shapes, dtypes; ``"batch"`` for a dynamic batch
dimension), the target, the passes applied, versions, and the sha256 of every file. ``load_artifact``
refuses, with an ``ArtifactError`` saying why, an artifact that is incomplete, modified, or built
for a machine this is not (another architecture, a GPU that is absent, CPU features missing).

>>> model = load_artifact("out/mlp")
>>> model(np.zeros((1, 784), np.float32)).shape
(1, 10)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm.runtime.vm import VirtualMachine

from graphopt.errors import ArtifactError, InputError
from graphopt.targets.runtime.manifest import FORMAT, FORMAT_VERSION, MANIFEST, Manifest, TensorSpec
from graphopt.targets.runtime.packed_library import library_file

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "CompiledModel", "Manifest", "TensorSpec", "load_artifact"]

BATCH = "batch"  #: the name a dynamic batch dimension has in the manifest
SEQ = "seq"  #: the name of a dynamic sequence length (``dynamic_seq_len``, its bound) in the manifest
WEIGHTS = "weights.gopw"  #: a compressed artifact's weights (``graphopt.compression.codec``)
TRANSFORM_PARAMS = "main_transform_params"  #: prepares the decoded weights for ``main``, once


class CompiledModel:
    """A compiled model: call it with numpy arrays (or torch tensors), get numpy arrays back.

    One output comes back as an array, several as a tuple, a model's dict of outputs as a dict (same
    keys, same order). Inputs are checked against the
    manifest first, so a wrong shape or dtype is an ``InputError`` naming the input.
    """

    def __init__(self, module: Any, manifest: Manifest, out_dir: Path | None = None, report: Any = None):
        self.module = module
        self.manifest = manifest
        self.out_dir = out_dir
        self.report = report
        self.inputs = list(manifest.inputs)
        self.outputs = list(manifest.outputs)
        self.output_keys: list[str] | None = list(manifest.output_keys) if manifest.output_keys else None
        self._vm: VirtualMachine | None = None
        self._device: Any = None
        self._main: Any = None
        self._weights: list[Any] = []
        self.raw_weights: list[np.ndarray] | None = None  #: decoded weights not yet prepared (see bind_weights)
        self._staging = threading.local()

    def __repr__(self) -> str:
        where = f" at {self.out_dir}" if self.out_dir else ""
        return f"<graphopt.CompiledModel {self.manifest.model!r} for {self.manifest.target.name}{where}>"

    @property
    def device(self) -> Any:
        if self._device is None:  # checked once: the per-call cost matters for small models
            kind = self.manifest.target.device
            device = tvm.cuda(0) if kind == "cuda" else tvm.cpu(0)
            if not device.exist:
                raise ArtifactError(
                    f"this artifact runs on a {kind} device (target '{self.manifest.target.name}') "
                    "and none is present on this machine"
                )
            self._device = device
        return self._device

    @property
    def vm(self) -> VirtualMachine:
        if self._vm is None:
            check_runnable_here(self.manifest)
            self._vm = VirtualMachine(self.module, self.device)
        return self._vm

    def bind_weights(self, arrays: list[np.ndarray]) -> None:
        """Give a compressed artifact its decoded weights: copied to the device and prepared by
        ``main_transform_params`` before the first call (a build for an absent GPU or another
        architecture binds them without running anything); every call passes them to ``main``."""
        self.raw_weights = [_contiguous(a) for a in arrays]
        self._weights = []

    def _prepared_weights(self) -> list[Any]:
        if self.raw_weights is not None:
            tensors = [_device_tensor(a, self.device) for a in self.raw_weights or []]
            self._weights, self.raw_weights = list(self.vm[TRANSFORM_PARAMS](tensors)), None
        return self._weights

    def weight_bytes(self) -> int:
        """Bytes of the weights the model holds once prepared: what ``main`` reads at every call."""
        return sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in self._prepared_weights())

    def prepare(self, *args: Any, **kwargs: Any) -> list[Any]:
        """Check the inputs against the manifest and copy them to the device as TVM tensors."""
        arrays = check_inputs(self.inputs, args, kwargs, dim_bounds(self.manifest))
        device = self.device
        return [_device_tensor(a, device) for a in arrays]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._main is None:
            self._main = self.vm["main"]
        staging = self._staging
        key = tuple((a.shape, a.dtype) for a in args if type(a) is np.ndarray)
        if kwargs or len(key) != len(args) or getattr(staging, "key", None) != key or not staging.views:
            staging.key, staging.tensors, staging.views = key, *self._staging_tensors(*args, **kwargs)
        for view, array in zip(staging.views, args, strict=False):
            view[...] = array
        weights = self._weights if self.raw_weights is None else self._prepared_weights()
        result = _unaliased(to_numpy(self._main(*staging.tensors, *weights), len(self.outputs)), staging.views)
        if self.output_keys is not None:
            return dict(zip(self.output_keys, result if isinstance(result, tuple) else (result,), strict=True))
        return result

    def _staging_tensors(self, *args: Any, **kwargs: Any) -> tuple[list[Any], list[np.ndarray]]:
        """Checked inputs on the device, and (on the CPU, for numpy inputs) numpy views of them that the
        next call with the same shapes and dtypes copies its inputs into: the checks, the tensor
        allocations and the Python around them cost more than the whole MLP at batch 1 (50 us of 65)."""
        tensors = self.prepare(*args, **kwargs)
        # numpy cannot view a bfloat16 tensor (DLPack): such inputs are copied in afresh at every call
        reusable = not kwargs and all(type(a) is np.ndarray and a.dtype.name != "bfloat16" for a in args)
        if not reusable or (tensors and tensors[0].device.dlpack_device_type() != tvm.cpu(0).dlpack_device_type()):
            return tensors, []
        return tensors, [np.from_dlpack(t) for t in tensors]

    def profile(self, *args: Any, runs: int = 10) -> Any:
        """Where the time goes: every kernel's milliseconds and GFLOP/s over ``runs`` runs on ``args``
        (a ``KernelProfile``, slowest first; see ``graphopt.targets.runtime.profile``)."""
        from graphopt.targets.runtime.profile import profile_model

        return profile_model(self, *args, runs=runs)

    def time(self, *args: Any, number: int = 10, repeat: int = 3) -> list[float]:
        """Seconds per run, ``repeat`` measurements each averaging ``number`` runs (TVM's time_evaluator)."""
        timer = self.vm.time_evaluator("main", self.device, number=number, repeat=repeat)
        return [float(r) for r in timer(*self.prepare(*args), *self._prepared_weights()).results]


def _device_tensor(array: np.ndarray, device: Any) -> Any:
    """A copy of ``array`` on ``device``; on the CPU, numpy copies into the new tensor's memory
    (half the time of ``tvm.runtime.tensor``'s checks, which matters for batch-1 models)."""
    if device.dlpack_device_type() != tvm.cpu(0).dlpack_device_type() or array.dtype.kind not in "fiu":
        return tvm.runtime.tensor(array, device)
    tensor = tvm.runtime.empty(array.shape, str(array.dtype), device)
    np.from_dlpack(tensor)[...] = array
    return tensor


#: dtypes numpy's DLPack import refuses: copied through ``tensor.numpy()`` (ml_dtypes' bfloat16).
_NO_DLPACK = ("bool", "bfloat16")


def _host_array(tensor: Any) -> np.ndarray:
    """A CPU tensor without a copy (the array keeps the VM's freshly allocated output alive); a
    device tensor (CUDA, RPC) copied to the host."""
    if tensor.device.dlpack_device_type() == tvm.cpu(0).dlpack_device_type() and tensor.dtype not in _NO_DLPACK:
        return np.from_dlpack(tensor)
    return tensor.numpy()


def _unaliased(result: Any, inputs: list[np.ndarray]) -> Any:
    """``result`` with any output that shares memory with a staged input copied: a model whose
    output is a view of its input (a reshape) would otherwise see it overwritten by the next call."""
    if not inputs:
        return result
    outputs = result if isinstance(result, tuple) else (result,)
    if not any(np.may_share_memory(out, view) for out in outputs for view in inputs):
        return result
    copied = tuple(out.copy() if any(np.may_share_memory(out, v) for v in inputs) else out for out in outputs)
    return copied if isinstance(result, tuple) else copied[0]


def to_numpy(result: Any, count: int) -> Any:
    """A VM result (tensor or array of tensors) as a numpy array or a tuple of them."""
    if count == 1 and hasattr(result, "numpy"):
        return _host_array(result)
    values = tuple(_host_array(item) for item in result)
    return values[0] if count == 1 else values


def as_array(value: Any, spec: TensorSpec) -> np.ndarray:
    """numpy arrays as they are, torch tensors through ``.numpy()`` (no torch import), lists cast."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # numpy has no bfloat16: ml_dtypes' (what TVM reads)
            import ml_dtypes

            int16 = sys.modules["torch"].int16  # loaded: the value is a torch tensor
            return tensor.view(int16).numpy().view(ml_dtypes.bfloat16)
        return tensor.numpy()
    if isinstance(value, tvm.runtime.Tensor):
        return value.numpy()
    try:
        return np.asarray(value, dtype=spec.dtype)
    except (TypeError, ValueError) as error:
        raise InputError(
            f"input '{spec.name}' is a {type(value).__name__}, expected an array of {spec.describe()}"
        ) from error


def dim_bounds(manifest: Manifest) -> dict[str, int]:
    """The largest size each bounded dynamic dimension accepts: ``{"seq": dynamic_seq_len}``."""
    bound = manifest.dynamic_seq_len
    return {SEQ: int(bound)} if bound else {}


def check_inputs(
    specs: list[TensorSpec], args: tuple[Any, ...], kwargs: dict[str, Any], bounds: dict[str, int] | None = None
) -> list[np.ndarray]:
    """Match positional and keyword inputs to the specs; check every shape and dtype. A dynamic
    dimension (``"batch"``, ``"seq"``) has one size across all inputs, at most ``bounds[name]``."""
    names = [s.name for s in specs]
    unknown = [k for k in kwargs if k not in names]
    if unknown or len(args) + len(kwargs) != len(specs) or any(n in kwargs for n in names[: len(args)]):
        expected = ", ".join(f"{s.name}: {s.describe()}" for s in specs)
        raise InputError(f"expected {len(specs)} input(s) ({expected}), got {len(args)} positional {sorted(kwargs)}")
    values = list(args) + [kwargs[n] for n in names[len(args) :]]
    arrays = []
    sizes: dict[str, int] = {}
    for spec, value in zip(specs, values, strict=True):
        array = as_array(value, spec)
        if str(array.dtype) != spec.dtype:
            raise InputError(f"input '{spec.name}' has dtype {array.dtype}, expected {spec.dtype} ({spec.describe()})")
        shape = tuple(array.shape)
        matches = len(shape) == len(spec.shape) and all(
            (isinstance(want, str) and got >= 1) or got == want for got, want in zip(shape, spec.shape, strict=False)
        )
        if not matches:
            raise InputError(f"input '{spec.name}' has shape {shape}, expected {spec.describe()}")
        for got, want in zip(shape, spec.shape, strict=True):
            if not isinstance(want, str):
                continue
            label = "batch size" if want == BATCH else "sequence length" if want == SEQ else f"size '{want}'"
            if want in sizes and got != sizes[want]:
                raise InputError(f"input '{spec.name}' has {label} {got}, other inputs have {sizes[want]}")
            if bounds and want in bounds and got > bounds[want]:
                raise InputError(
                    f"input '{spec.name}' has {label} {got}: this artifact accepts 1 to {bounds[want]} "
                    f"(built with dynamic_seq_len={bounds[want]})"
                )
            sizes[want] = got
        arrays.append(_contiguous(array))
    return arrays


def _contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` C-contiguous, a 0-d one kept 0-d (``np.ascontiguousarray`` makes it 1-d, which the VM
    refused for a scalar input: "expect Tensor with ndim 0 but get 1")."""
    return np.ascontiguousarray(array).reshape(array.shape)


# -- loading --------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(out_dir: Path, manifest: Manifest) -> None:
    """Every file the manifest lists exists and has the sha256 recorded at build time."""
    for name, facts in manifest.files.items():
        path = out_dir / name
        if not path.is_file():
            raise ArtifactError(f"corrupt artifact at {out_dir}: {name} is missing")
        actual = sha256_file(path)
        if actual != facts.sha256:
            raise ArtifactError(
                f"corrupt artifact at {out_dir}: {name} does not match its manifest "
                f"(sha256 {actual[:12]}…, expected {facts.sha256[:12]}…); rebuild it"
            )
    if manifest.library not in manifest.files:
        raise ArtifactError(f"corrupt artifact at {out_dir}: the library is not among the hashed files")


def check_runnable_here(manifest: Manifest) -> None:
    """Refuse artifacts for another architecture, an absent GPU, or CPU features this host lacks."""
    target = manifest.target
    name = target.name
    arch, here = target.arch, platform.machine()
    if arch and here and _arch(arch) != _arch(here):
        raise ArtifactError(
            f"this artifact was built for {arch} (target '{name}') and cannot run on this {here} machine"
        )
    if target.device == "cuda" and not tvm.cuda(0).exist:
        raise ArtifactError(f"this artifact was built for a CUDA GPU (target '{name}'); no CUDA GPU is present here")
    missing = missing_cpu_features(target.features)
    if missing:
        raise ArtifactError(
            f"this artifact was built for a CPU with {', '.join(missing)} (mcpu {target.mcpu}), "
            "which this machine lacks: rebuild it here"
        )


def _arch(name: str) -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name.lower(), name.lower())


def normalize_feature(name: str) -> str:
    """``sse4_1``/``sse4.1``, ``avx512_bf16``/``avx512bf16``, ``amx_tile``/``amx-tile`` compare equal."""
    return name.lower().replace("_", "").replace(".", "").replace("-", "")


def cpuinfo_flags() -> set[str] | None:
    """The host's CPU flags from /proc/cpuinfo, normalized; None where it cannot tell."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return {normalize_feature(flag) for flag in line.split(":", 1)[1].split()}
    except OSError:
        return None
    return None


def missing_cpu_features(features: list[str]) -> list[str]:
    """Features the artifact needs that this host's CPU does not list (empty where it cannot tell)."""
    flags = cpuinfo_flags()
    if flags is None:
        return []
    return [f for f in features if normalize_feature(f) not in flags]


_PREBUILT_KERNELS: dict[str, bytes] = {}


def use_prebuilt_kernels(out_dir: Path, manifest: Manifest) -> None:
    """Let TVM's CUDA loader take the nvcc-built kernels of the artifact instead of compiling again.

    TVM's CUDA module holds kernel source and calls ``tvm_callback_cuda_compile`` on load; the
    override answers from the artifact's fatbins (matched by the source's sha256) and falls back to
    TVM's own compiler for any other source.
    """
    for entry in manifest.extra.get("cuda_kernels") or []:
        _PREBUILT_KERNELS[entry["source_sha256"]] = (out_dir / entry["file"]).read_bytes()
    if _PREBUILT_KERNELS and not getattr(use_prebuilt_kernels, "installed", False):
        import tvm_ffi

        fallback = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)

        def compile_or_prebuilt(code: str, *rest: Any) -> Any:
            prebuilt = _PREBUILT_KERNELS.get(hashlib.sha256(code.encode()).hexdigest())
            if prebuilt is not None:
                return bytearray(prebuilt)
            if fallback is None:
                raise RuntimeError("no CUDA compiler is registered with TVM (tvm_callback_cuda_compile)")
            return fallback(code, *rest)

        tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_or_prebuilt, override=True)
        use_prebuilt_kernels.installed = True  # type: ignore[attr-defined]


def load_artifact(out_dir: str | Path, *, allow_mismatch: bool = False) -> CompiledModel:
    """Load the artifact at ``out_dir`` after checking its manifest, hashes and target.

    An artifact kept although it failed its check against PyTorch eager (``keep_mismatch``) is
    refused unless ``allow_mismatch``.
    """
    directory = Path(out_dir)
    manifest = Manifest.read(directory)
    verify_files(directory, manifest)
    check = manifest.eager_check
    if check is not None and check.get("ok") is False and not allow_mismatch:
        raise ArtifactError(
            f"the artifact at {out_dir} failed its check against PyTorch eager when it was built (max relative "
            f"error {check.get('max_relative_error'):.3g} on output '{check.get('output')}', bound "
            f"{check.get('tolerance'):.1e}): graphopt.load(..., allow_mismatch=True) loads it anyway"
        )
    check_runnable_here(manifest)
    if manifest.fallback:  # segments in TVM and in PyTorch (fallback="torch"): needs torch
        from graphopt.targets.runtime.fallback import load_fallback

        return load_fallback(directory, manifest)  # type: ignore[return-value]
    if manifest.target.device == "cuda":
        use_prebuilt_kernels(directory, manifest)
    try:
        with library_file(directory, str(manifest.library), manifest.extra) as path:
            module = load_library(path)
    except ArtifactError:
        raise
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"cannot load the library of the artifact at {out_dir}: {first}") from error
    model = CompiledModel(module, manifest, out_dir=directory)
    if manifest.weights:
        model.bind_weights(read_weights(directory, manifest))
    return model


def load_library(path: Path) -> Any:
    """``tvm.runtime.load_module`` without the "executable.cc:340: Warning: Scope Loaded:" lines
    TVM 0.27's VM loader prints to the process's stderr for every function it loads (two for an MLP,
    dozens for a large model): a deploy script's log is not the place for them. A load error still
    reaches the caller, as the exception. ``GRAPHOPT_DEBUG=1`` keeps TVM's output."""
    with _native_stderr_dropped(os.environ.get("GRAPHOPT_DEBUG", "") in ("", "0")):
        return tvm.runtime.load_module(str(path))


@contextlib.contextmanager
def _native_stderr_dropped(dropped: bool) -> Iterator[None]:
    if not dropped:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def read_weights(directory: Path, manifest: Manifest) -> list[np.ndarray]:
    """The decoded weights of a compressed artifact, checked against what ``main`` expects."""
    from graphopt.compression.codec import decode_weights

    entry = manifest.weights or {}
    try:
        weights = decode_weights((directory / entry["file"]).read_bytes())
    except ArtifactError as error:
        raise ArtifactError(f"cannot load the artifact at {directory}: {error}") from error
    if len(weights) != len(entry.get("tensors", [])):
        raise ArtifactError(f"corrupt artifact at {directory}: {entry['file']} holds the wrong number of tensors")
    return [array for _, array in weights]
