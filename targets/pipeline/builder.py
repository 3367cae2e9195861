"""``build``: lower a graph, compile it for a target, write the artifact, return the compiled model.

    lower_to_relax (torch.export -> from_exported_program, unsupported ops listed first)
      -> compile_module (the shared Relax pipeline with the target's schedule step)
      -> write_artifact (library + manifest.json, atomically)

Every failure leaves as a ``GraphoptError``: TVM's and the compilers' own exceptions are
summarized in one line (the traceback stays reachable as ``__cause__`` for ``--debug``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import tvm
from torch import fx

from graphopt import interrupts, progress
from graphopt.errors import BuildError, GraphoptError, InputError
from graphopt.ir import Graph
from graphopt.options import BuildOptions
from graphopt.targets.lowering.lower import lower_to_relax
from graphopt.targets.pipeline import compressed, lut_weights
from graphopt.targets.pipeline.artifact import LIBRARY, LINK_OPTIONS, versions, write_artifact
from graphopt.targets.pipeline.relax_pipeline import compile_module
from graphopt.targets.registry import TUNING_OUTCOME, get_target
from graphopt.targets.runtime import BATCH, SEQ, CompiledModel, TensorSpec, packed_library
from graphopt.targets.runtime.manifest import Manifest, TargetInfo


def build_graph(
    graph: Graph,
    report: Any = None,
    *,
    target: str = "cpu",
    out_dir: str | Path | None = None,
    options: BuildOptions | None = None,
    check: Callable[[CompiledModel], dict[str, Any] | None] | None = None,
) -> CompiledModel:
    """See ``graphopt.targets.build`` (which checks the options: here they are typed already)."""
    started = time.perf_counter()
    backend = get_target(target)
    typed = options or BuildOptions()
    if typed.fallback == "torch":
        from graphopt.targets.pipeline.fallback import build_with_fallback

        return build_with_fallback(graph, report, target=target, out_dir=out_dir, options=typed, check=check)  # type: ignore[return-value]
    dynamic_batch, tune, tune_trials, tune_db = typed.dynamic_batch, typed.tune, typed.tune_trials, typed.tune_db
    dynamic_seq_len = typed.dynamic_seq_len
    compress = typed.compress
    options_dict = typed.to_dict()
    tvm_target = backend.make_target(options_dict)
    progress.stage(f"lowering '{graph.name}' to TVM Relax")
    lowered = compressed.with_buffers_as_parameters(graph) if compress else graph
    mod, params = lower_to_relax(
        lowered, dynamic_batch=dynamic_batch, dynamic_seq_len=dynamic_seq_len, keep_params=compress, target=target
    )
    weights = compressed.weight_arrays(mod, params) if compress else None
    lut_layers: list[lut_weights.LutLayer] = []
    if typed.decode == "kernel":
        if weights is None:
            raise InputError("decode='kernel' keeps a compressed artifact's indices: it needs compress=True")
        if backend.device != "cpu":
            raise InputError(f"decode='kernel' has kernels for the CPU targets (cpu, arm), not for '{target}'")
        mod, weights, lut_layers = lut_weights.keep_indices(mod, weights)
    if compress:
        backend = compressed.lifting_backend(backend)
    inputs, outputs = io_specs(graph, mod, dynamic_batch=dynamic_batch, dynamic_seq_len=dynamic_seq_len)
    interrupts.check()
    tuning = f", tuning {tune_trials} trials" if tune else ""
    progress.stage(f"building with TVM for {target}{tuning}")
    with _summarized(f"TVM failed to compile '{graph.name}' for target '{target}'"):
        kernel_flops: dict[str, int] = {}
        kernel_nodes: dict[str, list[list[str]]] = {}
        executable = compile_module(mod, backend, tvm_target, options_dict, kernel_flops, kernel_nodes)
    interrupts.check()  # TVM may have swallowed a Ctrl-C: stop before checking and writing
    keys = dict_output_keys(graph)
    manifest = Manifest(
        model=graph.name,
        target=TargetInfo(target, backend.device, json.loads(str(tvm_target)), backend.describe(tvm_target)),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        output_keys=tuple(keys) if keys is not None else None,
        dynamic_batch=dynamic_batch,
        dynamic_seq_len=dynamic_seq_len,
        params=compressed.PARAMS_NOTE if compress else "bound into the library as constants",
        passes=report.to_dict() if report is not None else None,
        kernel_flops=kernel_flops,
        kernel_nodes=kernel_nodes,
        versions=versions(),
        build={
            "tuned": bool(tune),
            "tune_trials": tune_trials if tune else None,
            "tune_db": str(tune_db) if tune and tune_db else None,
            "tune_rpc": str(typed.tune_rpc) if tune and typed.tune_rpc else None,
            **({"tuning": options_dict[TUNING_OUTCOME]} if options_dict.get(TUNING_OUTCOME) else {}),
            "compile_seconds": round(time.perf_counter() - started, 3),
            **({"decode": "kernel", "indices_kept": [vars(layer) for layer in lut_layers]} if lut_layers else {}),
        },
    )
    if check is not None:  # before anything is written: a failed check raises and leaves no artifact
        progress.stage("checking the compiled model against PyTorch eager")
        manifest = manifest.with_entries(check(_as_model(backend, _compiled(executable, manifest, report, weights))))
    if out_dir is not None:
        export = backend.export_library or _export_with_host_compiler

        def write_files(path: str) -> dict[str, Any] | None:
            library = path.removesuffix(packed_library.SUFFIX)
            export(executable, library)
            hints = compressed.codebook_hints(graph)
            extra = compressed.write_weights(os.path.dirname(path), weights, hints) if weights is not None else {}
            if backend.package:
                extra.update(backend.package(executable, tvm_target, os.path.dirname(path)) or {})
            if typed.pack_library:
                extra.update(packed_library.pack(library))
            return extra

        progress.stage(f"writing the artifact to {out_dir}")
        name = LIBRARY + packed_library.SUFFIX if typed.pack_library else LIBRARY
        with _summarized(f"cannot write the library for target '{target}'"):
            manifest = write_artifact(out_dir, manifest, write_files, library=name)
    written = Path(out_dir) if out_dir is not None else None
    return _as_model(backend, _compiled(executable, manifest, report, weights, out_dir=written))


def _compiled(
    executable: Any, manifest: Manifest, report: Any, weights: Any, out_dir: Path | None = None
) -> CompiledModel:
    """The compiled model, with the weights a compressed build keeps outside the library bound."""
    compiled = CompiledModel(executable, manifest, out_dir=out_dir, report=report)
    if weights is not None:
        compiled.bind_weights([array for _, array in weights])
    return compiled


def _as_model(backend: Any, compiled: CompiledModel) -> CompiledModel:
    model_class = backend.extra.get("model_class")  # a cross target's stand-in: arm runs under qemu
    return model_class(compiled) if model_class else compiled


def _export_with_host_compiler(executable: Any, path: str) -> None:
    executable.export_library(path, options=LINK_OPTIONS)


def io_specs(
    graph: Graph, mod: Any, *, dynamic_batch: bool = False, dynamic_seq_len: int | None = None
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs from the Relax signature, named after the graph's inputs and outputs.

    A dynamic dimension is written by its name: ``"batch"`` (dimension 0 of an input) and ``"seq"``
    (dimension 1 of a 2+-d input, with ``dynamic_seq_len``); an output dimension computed from them
    as the expression (``"seq * 2"``).
    """
    main = mod["main"]
    input_names = [n.name for n in graph.input_nodes()]
    names: dict[str, str] = {}  # TVM's name of a symbolic size -> the manifest's
    for param in main.params:
        dims = list(param.ty.shape.values)
        wanted = [(0, BATCH if dynamic_batch else None), (1, SEQ if dynamic_seq_len is not None else None)]
        for index, name in wanted:
            if name is not None and index < len(dims) and isinstance(dims[index], tvm.tirx.Var):
                names[str(dims[index].name)] = name
    inputs = [_spec(name, param.ty, names) for name, param in zip(input_names, main.params, strict=False)]
    returned = main.ret_ty
    types = list(returned.fields) if hasattr(returned, "fields") else [returned]
    output_names = _output_names(graph, len(types))
    return inputs, [_spec(name, ty, names) for name, ty in zip(output_names, types, strict=True)]


def _spec(name: str, ty: Any, names: dict[str, str]) -> TensorSpec:
    if ty.shape is None:  # a shape TVM could not derive (only its rank): "?" per dimension
        return TensorSpec(name, ("?",) * int(ty.ndim), str(ty.dtype))
    return TensorSpec(name, tuple(_dim(d, names) for d in ty.shape.values), str(ty.dtype))


def _dim(dim: Any, names: dict[str, str]) -> int | str:
    if isinstance(dim, tvm.tirx.IntImm):
        return int(dim.value)
    if not names:
        return BATCH
    return re.sub(r"\b\w+\b", lambda m: names.get(m.group(0), m.group(0)), str(dim))


def dict_output_keys(graph: Graph) -> list[str] | None:
    """The keys, in order, of a model that returns one flat dict of tensors (``{"sum": a, ...}``), else None.

    A symbolic_trace graph returns the dict itself; an exported one a flat tuple, with the dict in its
    output pytree spec. The artifact then names its outputs by these keys and returns a dict.
    """
    args = graph.output_node().args[0]
    if isinstance(args, dict):
        keys, values = list(args), list(args.values())
        return [str(k) for k in keys] if all(isinstance(v, fx.Node) for v in values) else None
    spec = getattr(graph.module, "_out_spec", None)
    if (
        spec is not None
        and spec.type is dict
        and all(child.num_leaves == 1 and not child.children() for child in spec.children())
    ):
        return [str(k) for k in spec.context]
    return None


def _output_names(graph: Graph, count: int) -> list[str]:
    keys = dict_output_keys(graph)
    if keys is not None and len(keys) == count:
        return keys
    args = graph.output_node().args[0]
    flat = list(args) if isinstance(args, (tuple, list)) else [args]
    names = [getattr(a, "name", None) for a in flat]
    if len(names) != count or any(n is None for n in names) or len(set(names)) != count:
        return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    return [str(n) for n in names]


@contextlib.contextmanager
def _summarized(what: str) -> Iterator[None]:
    """Turn any non-graphopt exception into a one-line ``BuildError`` (chained for ``--debug``)."""
    try:
        yield
    except GraphoptError:
        raise
    except Exception as error:
        interrupts.check()  # a Ctrl-C that TVM wrapped in its own error is an interrupt, not a failure
        raise BuildError(f"{what}: {summarize(error)}") from error


def summarize(error: BaseException) -> str:
    """The line of a (TVM) error message that says what went wrong, without its traceback."""
    for line in str(error).splitlines():
        text = line.strip()
        if text and not line.startswith((" ", "\t")) and not text.startswith(("Traceback", "File ")):
            return text[:400]
    return type(error).__name__
