"""Lower graphopt's IR to a TVM Relax module through TVM's own torch frontend.

The graph is exported with ``torch.export`` (decomposed to core ATen, the op set TVM's
``from_exported_program`` translates) and handed to that frontend; we do not write a converter
again. ``from_fx`` is avoided on purpose: in TVM 0.27 it lowers eval-mode BatchNorm with training
semantics, silently wrong. Parameters are bound as constants so FoldConstant sees them.

Before translating, every ``call_function`` of the exported program is checked against the
frontend's convert map plus converters registered here (``register_converter``, used for
graphopt's own ops such as quantize/dequantize), so all unsupported ops are reported at once with
the graphopt node and the user's source line they came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx

from graphopt.capture import SHAPE_INPUTS_NOTE, dynamic_shapes_for
from graphopt.errors import CaptureError, GraphoptError, InputError, UnsupportedOpError, first_line
from graphopt.ir import Graph
from graphopt.metadata import user_source
from graphopt.targets.lowering.accumulate_dtypes import ACCUMULATE_CONVERTERS
from graphopt.targets.lowering.converters import BUILTIN_CHECKS, BUILTIN_CONVERTERS
from graphopt.targets.lowering.dtype_check import bool_for_number
from graphopt.targets.lowering.empty_cat import convert_cat
from graphopt.targets.lowering.half_opmath import HALF_OPMATH_CONVERTERS
from graphopt.targets.lowering.pool_indices import check_max_pool2d_with_indices, convert_max_pool2d_with_indices
from graphopt.targets.lowering.power import CONVERTERS as POWER_CONVERTERS
from graphopt.targets.lowering.promoted_where import convert_where
from graphopt.targets.lowering.remainder import CONVERTERS as REMAINDER_CONVERTERS
from graphopt.targets.lowering.safe_indices import bound_indices
from graphopt.targets.lowering.split_squeeze import CONVERTERS as SPLIT_SQUEEZE_CONVERTERS
from graphopt.targets.pipeline.kernel_nodes import binding_owners, tag_bindings

#: Converters for ops TVM's frontend does not know: ``"op_name.overload" -> fn(node, importer)``.
#: ``fn`` gets the exported fx node and the importer (``importer.env[arg]`` is an argument's
#: relax value, ``importer.block_builder.emit(...)`` adds a binding) and returns a relax value.
CUSTOM_CONVERTERS: dict[str, Callable[[fx.Node, Any], Any]] = {
    **BUILTIN_CONVERTERS,
    **HALF_OPMATH_CONVERTERS,
    "where.self": convert_where,
    **ACCUMULATE_CONVERTERS,  # its cumsum computes a half input in float32 too
    "cat.default": convert_cat,
    **POWER_CONVERTERS,
    **REMAINDER_CONVERTERS,
    **SPLIT_SQUEEZE_CONVERTERS,
    "max_pool2d_with_indices.default": convert_max_pool2d_with_indices,
}

#: Per-op checks, ``"op_name.overload" -> check(node) -> reason or None``, for ops that lower only
#: in some configurations; a node whose check gives a reason is reported as unsupported.
CHECKS: dict[str, Callable[[fx.Node], str | None]] = {
    **BUILTIN_CHECKS,
    "max_pool2d_with_indices.default": check_max_pool2d_with_indices,
}


#: What the error listing unsupported ops suggests.
FALLBACK_HINT = "--fallback torch (fallback='torch') runs them in PyTorch between compiled segments"


def register_converter(
    op: Any, fn: Callable[[fx.Node, Any], Any], *, check: Callable[[fx.Node], str | None] | None = None
) -> None:
    """Teach the lowering an op: ``op`` is an OpOverload (``torch.ops.graphopt.quantize.default``)
    or its frontend name (``"quantize.default"``). ``check(node)``, if given, returns why a
    particular node cannot be converted (reported with all other unsupported ops), else None."""
    CUSTOM_CONVERTERS[_op_name(op)] = fn
    if check is not None:
        CHECKS[_op_name(op)] = check


def _op_name(op: Any) -> str:
    return op if isinstance(op, str) else op.__name__


def export_graph(
    graph: Graph, *, dynamic_batch: bool = False, dynamic_seq_len: int | None = None
) -> torch.export.ExportedProgram:
    """``torch.export`` the graph's module and decompose it to the op set TVM translates.

    With ``dynamic_batch`` the first dimension of every input is one symbolic size "batch"; with
    ``dynamic_seq_len`` the second one of every input of 2+ dimensions is one size "seq" up to that bound.
    """
    if dynamic_seq_len is not None:
        longest = max((t.shape[1] for t in graph.example_inputs if t.dim() > 1), default=None)
        if longest is None:
            raise InputError("dynamic_seq_len: no input has a sequence dimension (dimension 1 of a 2+-d input)")
        if longest > dynamic_seq_len:
            raise InputError(
                f"dynamic_seq_len={dynamic_seq_len} is shorter than the example inputs' sequence length {longest}"
            )
    inputs, dynamic_shapes = dynamic_shapes_for(
        graph.module, graph.example_inputs, dynamic_batch=dynamic_batch, dynamic_seq_len=dynamic_seq_len
    )
    try:
        program = torch.export.export(graph.module, inputs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as error:
        message = first_line(error)
        if dynamic_seq_len is not None:
            raise InputError(f"cannot compile with a dynamic sequence length: {message}") from error
        if dynamic_batch:
            raise InputError(f"cannot compile with a dynamic batch size: {message}") from error
        why = next((note for note in graph.notes if note.startswith(SHAPE_INPUTS_NOTE)), None)
        raise CaptureError(
            f"torch.export of graph '{graph.name}' failed: {message}" + (f"; {why}" if why else "")
        ) from error
    return program.run_decompositions()


def origin_node(graph: Graph, node: fx.Node, by_name: dict[str, fx.Node] | None = None) -> fx.Node | None:
    """The graphopt node an exported node came from, following torch's ``from_node`` provenance
    (``by_name``: the graph's nodes by name, when the caller looks up many)."""
    by_name = by_name if by_name is not None else {n.name: n for n in graph.module.graph.nodes}
    target_graph = id(graph.module.graph)
    for source in node.meta.get("from_node") or []:
        while source is not None:
            if source.graph_id == target_graph and source.name in by_name:
                return by_name[source.name]
            source = source.from_node[0] if source.from_node else None
    return None


def where_from(graph: Graph, node: fx.Node) -> tuple[str, str | None]:
    """(graphopt node name, user source line) for an exported node."""
    origin = origin_node(graph, node)
    if origin is None:
        return node.name, user_source(node)
    return origin.name, graph.info(origin).source or user_source(node)


def supported_ops() -> set[str]:
    """Names (``"convolution.default"``) the frontend and our registered converters translate."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    import graphopt.targets.lowering.quantized  # noqa: F401  (registers the int8 converters)

    return {name for name in ExportedProgramImporter().convert_map if isinstance(name, str)} | set(CUSTOM_CONVERTERS)


def find_unsupported(graph: Graph, program: torch.export.ExportedProgram) -> list[tuple[str, str, str | None]]:
    """Every (graphopt node, op, source line) the frontend cannot translate, in graph order."""
    known = supported_ops()
    problems: list[tuple[str, str, str | None]] = []
    for node in program.graph.nodes:
        op = unsupported_op(node, known)
        if op is None:
            continue
        where, source = where_from(graph, node)
        problem = (where, op, source)
        if problem not in problems:
            problems.append(problem)
    return problems


def unsupported_op(node: fx.Node, known: set[str]) -> str | None:
    """The op (``"aten.erfinv.default"``, with the check's reason where one refused it) if the
    frontend cannot translate ``node`` of an exported program; None if it can. ``known``:
    ``supported_ops()``."""
    if node.op != "call_function":
        return None
    name = _op_name(node.target)
    reason = CHECKS[name](node) if name in known and name in CHECKS else None
    if name in known and reason is None:
        return None
    op = f"aten.{name}" if isinstance(node.target, torch._ops.OpOverload) else name
    return f"{op} ({reason})" if reason else op


def check_supported(graph: Graph, program: torch.export.ExportedProgram, target: str) -> None:
    """Raise ``UnsupportedOpError`` listing every op ``target`` cannot handle, if there are any."""
    problems = find_unsupported(graph, program)
    if problems:
        raise UnsupportedOpError(target, problems, FALLBACK_HINT)


def lower_to_relax(
    graph: Graph,
    *,
    dynamic_batch: bool = False,
    dynamic_seq_len: int | None = None,
    keep_params: bool = False,
    target: str = "cpu",
) -> tuple[Any, dict[str, Any]]:
    """Lower ``graph`` to a Relax ``IRModule`` with one function "main".

    Every gather reads in bounds with PyTorch's meaning of negative indices (``safe_indices``).
    Returns ``(mod, params)``. By default the parameters are bound into ``mod`` as constants and
    ``params`` is empty; with ``keep_params`` they stay function inputs after the user's inputs
    and ``params`` maps their names to ``tvm.runtime.Tensor`` values.

    >>> mod, _ = lower_to_relax(graph)
    >>> mod["main"].params  # the model's inputs, parameters folded in as constants
    """
    program = export_graph(graph, dynamic_batch=dynamic_batch, dynamic_seq_len=dynamic_seq_len)
    check_supported(graph, program, target)
    returned: list[tuple[fx.Node, Any]] = []  # (exported node, its converter's value), for the kernel map
    importer = _tracking_importer(returned)
    try:
        mod = importer.from_exported_program(
            program,
            keep_params_as_input=keep_params,
            unwrap_unit_return_tuple=True,
            no_bind_return_tuple=False,
            custom_convert_map={name: _tracked(fn, returned) for name, fn in CUSTOM_CONVERTERS.items()},
        )
    except GraphoptError:
        raise
    except Exception as error:
        failing = getattr(error, "graphopt_exported_node", None)
        where, source = where_from(graph, failing) if failing is not None else (None, None)
        op = f"aten.{_op_name(failing.target)}" if failing is not None else None
        raise UnsupportedOpError(target, [(where or "?", op or "?", source)]) from error
    _refuse_bool_for_number(graph, returned, target)
    mod = tag_bindings(mod, binding_owners(mod, _origin_names(graph, returned)))
    mod = bound_indices(mod)
    params: dict[str, Any] = {}
    if keep_params:
        names = [spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "PARAMETER"]
        params = dict(zip(names, mod["main"].attrs["params"], strict=False))
    return mod, params


def _refuse_bool_for_number(graph: Graph, returned: list[tuple[fx.Node, Any]], target: str) -> None:
    """A node lowered as bool where torch computes a number is named here, not by TVM's backend later."""
    wrong = bool_for_number(returned)
    if wrong is not None:
        node, wanted = wrong
        where, source = where_from(graph, node)
        op = f"aten.{_op_name(node.target)} (lowered as bool where torch computes {wanted})"
        raise UnsupportedOpError(target, [(where, op, source)])


def _origin_names(graph: Graph, returned: list[tuple[fx.Node, Any]]) -> list[tuple[str | None, Any]]:
    """``returned`` with each exported node replaced by the name of the graphopt node it came from."""
    by_name = {n.name: n for n in graph.module.graph.nodes}
    origins = [(origin_node(graph, node, by_name), value) for node, value in returned]
    return [(origin.name if origin is not None else None, value) for origin, value in origins]


def _tracked(fn: Callable[..., Any], returned: list[tuple[fx.Node, Any]] | None = None) -> Callable[..., Any]:
    """Wrap a converter so an exception raised inside it remembers the node it was converting, and
    what it returned is recorded in ``returned`` (which bindings each node emitted: the kernel map)."""

    def convert(node: fx.Node, *rest: Any) -> Any:
        try:
            value = fn(node, *rest)
        except Exception as error:
            if not hasattr(error, "graphopt_exported_node"):
                error.graphopt_exported_node = node  # type: ignore[attr-defined]
            raise
        if returned is not None:
            returned.append((node, value))
        return value

    return convert


def _tracking_importer(returned: list[tuple[fx.Node, Any]] | None = None) -> Any:
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    class TrackingImporter(ExportedProgramImporter):
        def create_convert_map(self) -> dict[str, Callable[..., Any]]:
            return {name: _tracked(fn, returned) for name, fn in super().create_convert_map().items()}

        @staticmethod
        def _convert_pytorch_tensor_to_tvm(tensor_value: torch.Tensor) -> Any:
            return compact_constant(tensor_value, ExportedProgramImporter._convert_pytorch_tensor_to_tvm)

    return TrackingImporter()


def compact_constant(tensor: torch.Tensor, convert: Callable[[torch.Tensor], Any]) -> Any:
    """A constant as a compact TVM tensor, what every kernel's argument check requires. The frontend
    hands torch's own strides over (DLPack): an empty tensor's, (4, 1, 1) for shape (2, 4, 0), are not
    TVM's compact (0, 0, 1), so a kernel reading it failed at run time ("Mismatched A.strides", ONNX
    CausalConvWithState with kernel size 1: an empty state); a strided view would fail the same way."""
    import tvm

    if tensor.layout == torch.strided and tensor.numel() == 0:
        return tvm.runtime.empty(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
    if tensor.layout == torch.strided and not tensor.is_contiguous():
        tensor = tensor.contiguous()
    return convert(tensor)
