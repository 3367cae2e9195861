"""``fallback="torch"``: build what TVM can lower, run the rest in PyTorch between the segments.

    export_graph -> partition.split (TVM segments even, PyTorch segments odd)
      -> each TVM segment: builder.build_graph (the target's own pipeline, in memory)
      -> each PyTorch segment: torch.export, a data-dependent size kept dynamic
      -> the eager check of the whole, then the artifact (runtime.fallback describes its files)

Without fallback a build with an op TVM cannot lower fails listing every such op; with it those
ops, and every node whose shape depends on the data (NMS's ``nonzero``), are listed in the report
and the manifest instead, with the user's source line, and the artifact says it needs torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import fx
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from graphopt import progress
from graphopt.errors import UnsupportedOpError
from graphopt.ir import Graph
from graphopt.options import BuildOptions
from graphopt.targets.lowering.lower import export_graph, origin_node
from graphopt.targets.pipeline import builder
from graphopt.targets.pipeline.artifact import LINK_OPTIONS, versions, write_artifact
from graphopt.targets.pipeline.partition import (
    TVM,
    FallbackNode,
    describe,
    fallback_nodes,
    segment_inputs,
    split,
    submodule,
)
from graphopt.targets.registry import get_target
from graphopt.targets.runtime import CompiledModel, TensorSpec
from graphopt.targets.runtime.fallback import PROGRAM, FallbackModel, TvmSegment
from graphopt.targets.runtime.manifest import Manifest, TargetInfo


def build_with_fallback(
    graph: Graph,
    report: Any,
    *,
    target: str,
    out_dir: str | Path | None,
    options: BuildOptions,
    check: Callable[[Any], dict[str, Any] | None] | None,
) -> CompiledModel | FallbackModel:
    """See ``graphopt.targets.build``; a graph that lowers whole is built as without fallback."""
    started = time.perf_counter()
    inner = dataclasses.replace(options, fallback=None)
    progress.stage(f"finding what of '{graph.name}' TVM cannot lower")
    module = export_graph(graph).module()
    found = fallback_nodes(graph, module)
    if not found:
        try:
            built = builder.build_graph(graph, report, target=target, out_dir=out_dir, options=inner, check=check)
        except UnsupportedOpError as error:  # a converter failed: that node falls back, the rest is split
            found.update(_failed_conversions(graph, module, error))
            if not found:
                raise
        else:
            if report is not None:
                report.notes.append("fallback torch: every node lowers to TVM, nothing runs in PyTorch")
            return built
    outer, kinds, segments = _build_segments(graph, module, found, target, inner)
    reported = [node for node in found.values() if node is not None]
    manifest = _manifest(graph, report, target, inner, module, kinds, segments, reported, started)
    model = _model(manifest, outer, segments, report)
    if check is not None:
        progress.stage("checking the segments together against PyTorch eager")
        manifest = manifest.with_entries(check(model))
    if out_dir is not None:
        progress.stage(f"writing the artifact to {out_dir}")
        backend = get_target(target)
        export = backend.export_library or (
            lambda executable, path: executable.export_library(path, options=LINK_OPTIONS)
        )

        def write_files(path: str) -> dict[str, Any] | None:
            Path(path).write_text(json.dumps(program_of(outer), indent=2) + "\n")
            for name, segment in segments.items():
                where = os.path.join(os.path.dirname(path), segment_file(name, kinds[name]))
                if kinds[name] == TVM:
                    export(segment.module, where)
                else:
                    torch.export.save(segment, where)
            return None

        with builder._summarized(f"cannot write the artifact for target '{target}'"):
            manifest = write_artifact(out_dir, manifest, write_files, library=PROGRAM)
    return _model(manifest, outer, segments, report, Path(out_dir) if out_dir is not None else None)


def _build_segments(
    graph: Graph, module: fx.GraphModule, found: dict[str, FallbackNode | None], target: str, options: BuildOptions
) -> tuple[fx.GraphModule, dict[str, str], dict[str, Any]]:
    """Split and build every segment. A node whose TVM converter fails (the frontend knows its op but
    not this use of it) joins ``found`` and the split is made again, until every TVM segment builds."""
    by_name = {node.name: node for node in module.graph.nodes}
    while True:
        outer, kinds = split(module, set(found))
        examples = segment_inputs(outer, graph.example_inputs)
        segments: dict[str, Any] = {}
        try:
            for name, kind in kinds.items():
                segment = submodule(outer, name)
                if kind == TVM:
                    piece = Graph(segment, examples[name], name=f"{graph.name}.{name}")
                    segments[name] = builder.build_graph(piece, None, target=target, options=options)
                else:
                    segments[name] = export_segment(segment, examples[name], name)
        except UnsupportedOpError as error:
            failing = [node for node, _, _ in error.problems if node in by_name and node not in found]
            if not failing:
                raise
            ops = {node: op for node, op, _ in error.problems}
            for name in failing:
                found[name] = describe(graph, by_name[name], "TVM converter failed", ops[name])
            continue
        return outer, kinds, segments


def _failed_conversions(graph: Graph, module: fx.GraphModule, error: UnsupportedOpError) -> dict[str, FallbackNode]:
    """The nodes of ``module`` that the failed build of the whole ``graph`` names (by graphopt node)."""
    ops = {node: op for node, op, _ in error.problems}
    failed = {}
    for node in module.graph.nodes:
        origin = origin_node(graph, node) if node.op == "call_function" else None
        if origin is not None and origin.name in ops:
            failed[node.name] = describe(graph, node, "TVM converter failed", ops[origin.name])
    return failed


def export_segment(
    submodule: fx.GraphModule, inputs: tuple[Any, ...], name: str = "segment"
) -> torch.export.ExportedProgram:
    """A PyTorch segment as a ``torch.export`` program. A dimension that depends on the data (a count
    of kept boxes, an unbacked size of the whole program) stays dynamic even where the example has 1
    or 0 of them (size-oblivious: no 0/1 specialization); every other dimension is the example's."""
    from torch.fx.experimental import _config as shape_config

    placeholders = [node for node in submodule.graph.nodes if node.op == "placeholder"]
    shapes: list[dict[int, Any] | None] = []
    for node, value in zip(placeholders, inputs, strict=True):
        fake = node.meta.get("val")
        if not isinstance(value, torch.Tensor) or fake is None or not value.dim():
            shapes.append(None)
            continue
        dims = {i: torch.export.Dim.DYNAMIC for i, size in enumerate(fake.shape) if free_unbacked_symbols(size)}
        shapes.append(dims or None)
    oblivious = shape_config.patch(backed_size_oblivious=True)  # type: ignore[attr-defined]
    with builder._summarized(f"torch.export of the PyTorch segment {name} failed"), oblivious:
        return torch.export.export(submodule, tuple(inputs), dynamic_shapes=tuple(shapes), strict=False)


def segment_file(name: str, kind: str) -> str:
    return f"{name}.so" if kind == TVM else f"{name}.pt2"


def program_of(outer: fx.GraphModule) -> dict[str, Any]:
    """The outer module's dataflow as JSON: inputs, segment calls and tuple reads, outputs."""
    inputs, steps = [], []
    outputs: list[str] = []
    for node in outer.graph.nodes:
        if node.op == "placeholder":
            inputs.append(node.name)
        elif node.op == "call_module":
            steps.append({"segment": str(node.target), "args": [a.name for a in node.args], "out": node.name})
        elif node.op == "call_function":  # split_module's only one: operator.getitem of a segment's tuple
            source, index = node.args
            steps.append({"getitem": source.name, "index": int(index), "out": node.name})
        elif node.op == "output":
            returned = node.args[0]
            outputs = [a.name for a in (returned if isinstance(returned, (tuple, list)) else [returned])]
    return {"inputs": inputs, "steps": steps, "outputs": outputs}


def _model(
    manifest: Manifest, outer: fx.GraphModule, segments: dict[str, Any], report: Any, out_dir: Path | None = None
) -> FallbackModel:
    runners = {
        name: TvmSegment(segment) if isinstance(segment, CompiledModel) else segment.module()
        for name, segment in segments.items()
    }
    return FallbackModel(manifest, program_of(outer), runners, out_dir=out_dir, report=report)


def _manifest(
    graph: Graph,
    report: Any,
    target: str,
    options: BuildOptions,
    module: fx.GraphModule,
    kinds: dict[str, str],
    segments: dict[str, Any],
    nodes: list[FallbackNode],
    started: float,
) -> Manifest:
    backend = get_target(target)
    tvm_target = backend.make_target(options.to_dict())
    keys = builder.dict_output_keys(graph)
    returned = module.graph.output_node().args[0]
    flat = returned if isinstance(returned, (tuple, list)) else [returned]
    values = [node.meta.get("val") for node in flat if isinstance(node, fx.Node)]
    names = builder._output_names(graph, len(values))
    entries = []
    for name, kind in kinds.items():
        entry: dict[str, Any] = {"name": name, "kind": kind, "file": segment_file(name, kind)}
        if kind == TVM:
            entry["inputs"] = [s.to_dict() for s in segments[name].inputs]
            entry["outputs"] = [s.to_dict() for s in segments[name].outputs]
        entries.append(entry)
    if report is not None:
        listed = "; ".join(f"{n.node} {n.op} ({n.reason})" + (f" at {n.source}" if n.source else "") for n in nodes)
        report.notes.append(
            f"fallback torch: {len(nodes)} node(s) run in PyTorch, so the artifact needs torch to load: {listed}"
        )
    return Manifest(
        model=graph.name,
        target=TargetInfo(target, backend.device, json.loads(str(tvm_target)), backend.describe(tvm_target)),
        inputs=tuple(_spec(p.name, t) for p, t in zip(graph.input_nodes(), graph.example_inputs, strict=True)),
        outputs=tuple(_spec(name, value) for name, value in zip(names, values, strict=True)),
        output_keys=tuple(keys) if keys is not None else None,
        params="bound into each segment (TVM libraries and torch.export programs)",
        passes=report.to_dict() if report is not None else None,
        versions=versions(),
        build={"tuned": bool(options.tune), "compile_seconds": round(time.perf_counter() - started, 3)},
        fallback={
            "requires": f"torch {torch.__version__}",
            "nodes": [n.to_dict() for n in nodes],
            "segments": entries,
        },
    )


def _spec(name: str, value: Any) -> TensorSpec:
    """A tensor's spec; a data-dependent dimension is written "?"."""
    shape = tuple("?" if free_unbacked_symbols(d) else int(d) for d in value.shape)
    return TensorSpec(name, shape, str(value.dtype).removeprefix("torch."))
