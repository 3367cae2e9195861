"""Run a pipeline of passes with instrumentation: timing, graph size, IR dumps, verification.

Every pass runs on a copy of the graph, so a pass that raises leaves the caller's graph as it was.
Instruments see each pass before and after (as TVM's ``PassInstrument`` does), which is how timing,
dumps, progress display and verify mode reach every pass without the pass doing anything.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from graphopt import interrupts, presets
from graphopt.errors import GraphoptError, InputError, PassError, VerificationError
from graphopt.ir import Graph
from graphopt.metadata import annotation_key, user_source
from graphopt.numerics import relative_error
from graphopt.op_kinds import op_label
from graphopt.options import coerce, nearest
from graphopt.pass_api import CONTEXT_NAMES, PassInfo, PassResult, get_pass
from graphopt.report import OptimizeReport, PassRecord

#: Default verify tolerance: relative error (see ``numerics.relative_error``) for float32 passes
#: that only reorder arithmetic, e.g. folding BatchNorm into a convolution's weights.
DEFAULT_TOLERANCE = 1e-5

PassSpec = str | PassInfo | Callable[..., PassResult]


class PassInstrument(Protocol):
    """Hooks around every pass. Either method may be left out."""

    def before_pass(self, info: PassInfo, graph: Graph) -> None: ...

    def after_pass(self, info: PassInfo, graph: Graph, record: PassRecord) -> None: ...


class DumpIR:
    """Writes the graph after each pass to ``directory/NN_pass.txt`` (canonical text and code)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.count = 0

    def before_pass(self, info: PassInfo, graph: Graph) -> None:
        if self.count == 0:
            self._write("00_captured", graph)

    def after_pass(self, info: PassInfo, graph: Graph, record: PassRecord) -> None:
        self.count += 1
        self._write(f"{self.count:02d}_{info.name}", graph)

    def _write(self, stem: str, graph: Graph) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{stem}.txt").write_text(graph.text(types=True) + "\n\n" + graph.module.code)


def resolve_pipeline(passes: str | Sequence[PassSpec] | None, context: dict[str, Any]) -> list[PassInfo]:
    """Turn a preset name, a comma-separated string or a list into registered passes.

    Passes that need context the caller did not give (O3's quantization without calibration data)
    are dropped from presets; named explicitly, they are an error.
    """
    if passes is None:
        passes = "O2"
    from_preset = isinstance(passes, str) and passes in presets.PRESETS
    if isinstance(passes, str):
        names: Sequence[PassSpec] = (
            presets.PRESETS[passes] if from_preset else [p.strip() for p in passes.split(",") if p.strip()]
        )
    else:
        names = passes
    pipeline = []
    for spec in names:
        info = _as_pass_info(spec)
        missing = [need for need in info.requires if need in CONTEXT_NAMES and context.get(need) is None]
        if missing and from_preset:
            continue
        if missing:
            raise InputError(f"pass '{info.name}' needs {', '.join(missing)}, which was not given")
        pipeline.append(info)
    return pipeline


def check_pass_options(pipeline: Sequence[PassInfo], options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{pass: {option: value}}`` checked against the pipeline's passes and converted to the types
    their signatures declare (``graphopt.options.coerce``): before any pass runs."""
    by_name = {info.name: info for info in pipeline}
    typed: dict[str, dict[str, Any]] = {}
    for name, values in options.items():
        if name not in by_name:
            raise InputError(f"options given for pass '{name}', which is not in the pipeline{nearest(name, by_name)}")
        info = by_name[name]
        typed[name] = {}
        for option, value in values.items():
            if option not in info.options:
                raise InputError(f"pass '{name}' has no option '{option}'{nearest(option, info.options)}")
            declared = info.option_types.get(option, Any)
            typed[name][option] = coerce(value, declared, f"pass option {name}.{option}")
    return typed


def _as_pass_info(spec: PassSpec) -> PassInfo:
    if isinstance(spec, PassInfo):
        return spec
    if isinstance(spec, str):
        return get_pass(spec)
    if callable(spec):
        name = getattr(spec, "__name__", "custom_pass")
        return PassInfo(name=name, description="", function=spec, options={}, origin=getattr(spec, "__module__", ""))
    raise InputError(f"cannot use {spec!r} as a pass")


def optimize(
    graph: Graph,
    passes: str | Sequence[PassSpec] | None = "O2",
    *,
    verify: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    options: dict[str, dict[str, Any]] | None = None,
    dump_dir: str | Path | None = None,
    instruments: Sequence[Any] = (),
    calibration_data: Any = None,
    labels: Any = None,
) -> tuple[Graph, OptimizeReport]:
    """Run ``passes`` (a preset "O0".."O3", "a,b,c", or a list) over a copy of ``graph``.

    With ``verify=True`` the graph runs in PyTorch before and after each pass on its example
    inputs; the first pass whose outputs drift by more than ``tolerance`` (relative to the largest
    output magnitude; a pass may declare its own) raises ``VerificationError`` naming it.

    >>> optimized, report = graphopt.optimize(graph, "O2", verify=True)
    >>> print(report.to_json())
    """
    context = {"calibration_data": calibration_data, "labels": labels}
    pipeline = resolve_pipeline(passes, context)
    options = check_pass_options(pipeline, options or {})
    all_instruments = list(instruments) + ([DumpIR(dump_dir)] if dump_dir else [])
    report = OptimizeReport(graph.name, graph.capture_method, graph.stats(), notes=list(graph.notes))
    current = graph
    reference = current(*current.example_inputs) if verify else None
    with _older_objects_frozen():
        for info in pipeline:
            for instrument in all_instruments:
                if hasattr(instrument, "before_pass"):
                    instrument.before_pass(info, current)
            record, current = _run_one(info, current, options.get(info.name, {}), context)
            release_replaced_graphs()
            interrupts.check()
            if verify:
                outputs = current(*current.example_inputs)
                record.max_error = relative_error(reference, outputs)
                limit = info.tolerance if info.tolerance is not None else tolerance
                if not record.max_error <= limit:
                    raise VerificationError(
                        info.name, f"outputs drift by {record.max_error:.3g} relative, tolerance {limit:.3g}"
                    )
                reference = outputs
            report.passes.append(record)
            for instrument in all_instruments:
                if hasattr(instrument, "after_pass"):
                    instrument.after_pass(info, current, record)
    return current, report


@contextlib.contextmanager
def _older_objects_frozen() -> Iterator[None]:
    """Within the block the cyclic collector skips the objects that existed before it (``gc.freeze``).

    ``release_replaced_graphs`` collects after every pass; a full collection walks every tracked
    object of the process (torch and TVM hold millions: 0.2 s a pass), while the graphs to free are
    all copies the passes made. An application that froze its own heap keeps its freeze."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def release_replaced_graphs() -> None:
    """Free the graphs earlier passes replaced, with their copy of the weights, now.

    A ``GraphModule`` sits in reference cycles (module, graph, nodes), so a replaced graph is freed
    only by the cyclic collector, which counts Python objects, not tensor bytes: it did not run for
    many passes, and each pass left one more copy of the weights alive (ViT-B/16, 0.35 GB of
    weights: +0.35 GB a pass, 6.7 GB resident at the end of O2). With this the passes hold at most
    the caller's graph, the current one and the copy a pass works on.
    """
    gc.collect()


def _annotations_current(graph: Graph, key_before: Any) -> bool:
    """Whether the copy's annotations (deep-copied with its nodes) still hold after the pass: nothing
    ``annotate`` reads changed (``metadata.annotation_key``) and the compiled code is the graph's."""
    if key_before is None:
        return False
    key = annotation_key(graph.module)
    return key is not None and key == key_before and graph.module.code == key[0]


def _run_one(
    info: PassInfo, graph: Graph, options: dict[str, Any], context: dict[str, Any]
) -> tuple[PassRecord, Graph]:
    if "eval_mode" in info.requires and graph.module.training:
        raise PassError(info.name, "the model is in training mode; call model.eval() before optimizing")
    kwargs = dict(options)
    kwargs.update({need: context[need] for need in info.requires if need in CONTEXT_NAMES})
    before = graph.stats()
    key = annotation_key(graph.module)
    working = graph.copy()
    start = time.perf_counter()
    try:
        result = info.function(working, **kwargs)
    except GraphoptError as error:
        if isinstance(error, PassError):
            raise
        raise PassError(info.name, error.message, node=error.node, op=error.op, source=error.source) from error
    except Exception as error:
        node = getattr(error, "graphopt_node", None)
        raise PassError(
            info.name,
            f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}",
            node=node.name if node is not None else None,
            op=op_label(working.module, node) if node is not None else None,
            source=user_source(node) if node is not None else None,
        ) from error
    seconds = time.perf_counter() - start
    if not isinstance(result, PassResult):
        raise PassError(info.name, f"returned {type(result).__name__}, expected a PassResult")
    if not _annotations_current(result.graph, key):
        result.graph.refresh()
    record = PassRecord(info.name, seconds, before, result.graph.stats(), result.changed, dict(result.details))
    return record, result.graph
