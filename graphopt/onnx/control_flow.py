"""ONNX If, Loop and Scan, made static: a branch inlined or both selected, a loop unrolled.

A compiled target has static shapes and no control flow, so each op becomes plain PyTorch that a
trace flattens, following the op's definition (``onnx/reference/ops/op_if.py``, ``op_loop.py``,
``op_scan.py``):

- If: a constant condition (an initializer, a Constant, or a value ``fold_shape_computations``
  folded, as in AffineGrid's function body) inlines the branch it takes; a condition computed at run
  time runs both branches and picks with ``torch.where``, when their outputs agree in shape and dtype.
- Loop: a trip count known when the model is built (a constant, or an input ``graphopt.onnx.backend``
  binds, as it binds every shape-setting input) is unrolled, the body converted once per iteration
  with its iteration number a constant (so a Slice at ``i`` is static). A body condition computed at
  run time is followed with a mask (each carried value keeps its last value once the condition is
  false), when there are no scan outputs (their length would depend on it).
- Scan: unrolled over the scanned axis, whose length is the input's static shape.

A body (a subgraph) is converted by ``graphopt.onnx.io.import_onnx`` as a model of its own, so every
converter, fold and check applies, nested control flow included: the values it reads from an outer
scope become its extra inputs (or initializers, where they are constants). What cannot be made
static is one ``NotImplementedError`` naming the reason, which import reports as one line naming the node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

#: The attribute ``prepare`` gives each control-flow node: the model's opsets, which its bodies import.
OPSETS_ATTRIBUTE = "graphopt_opsets"
_CONTROL_FLOW = ("If", "Loop", "Scan")
#: Ops of other domains whose attributes are subgraphs, converted like control-flow bodies
_WITH_BODIES = (("ai.onnx.preview", "FlexAttention"),)
#: Ops whose outputs (several, by position) onnx2torch cannot return as graph outputs directly.
_MULTI_OUTPUT = (*_CONTROL_FLOW, "RNN", "GRU", "LSTM")


def prepare(model: Any) -> Any:
    """``model`` with every If on a constant condition replaced by the branch it takes (then folded
    again, which can make further conditions constant), ready for conversion (``routed``)."""
    from graphopt.onnx.constants import fold_shape_computations

    if any(node.op_type == "If" for node in model.graph.node):
        for _ in range(16):  # until neither inlining nor folding changes anything
            folded = fold_shape_computations(inline_constant_ifs(model))
            if folded is model:
                break
            model = folded
    return routed(model)


def inline_constant_ifs(model: Any) -> Any:
    """A copy of ``model`` with each top-level If whose condition is an initializer replaced by the nodes
    of the branch it takes (its outputs through Identity); ``model`` itself when there is none."""
    import onnx
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    if not any(n.op_type == "If" and n.domain in ("", "ai.onnx") and n.input[0] in constants for n in model.graph.node):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = []
    for node in copy.graph.node:
        if node.op_type != "If" or node.domain not in ("", "ai.onnx") or node.input[0] not in constants:
            nodes.append(node)
            continue
        taken = "then_branch" if bool(np.all(numpy_helper.to_array(constants[node.input[0]]))) else "else_branch"
        branch = next(a.g for a in node.attribute if a.name == taken)
        nodes.extend(branch.node)
        copy.graph.initializer.extend(branch.initializer)
        for name, value in zip(node.output, branch.output, strict=False):
            if name:
                nodes.append(onnx.helper.make_node("Identity", [value.name], [name]))
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def routed(model: Any) -> Any:
    """A copy of ``model`` ready for conversion: its control-flow nodes told the model's opsets, and the
    graph outputs that a multi-output node produces routed through an Identity each (onnx2torch returns
    a node's whole result for a graph output, not the output named); ``model`` itself when neither applies."""
    import onnx

    graph = model.graph
    outputs = {value.name for value in graph.output}
    flows = [n for n in graph.node if _has_bodies(n)]
    routed = [
        n
        for n in graph.node
        if n.op_type in _MULTI_OUTPUT and len(n.output) > 1 and any(o in outputs for o in n.output)
    ]
    if not flows and not routed:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    opsets = [f"{entry.domain}:{entry.version}" for entry in copy.opset_import]
    nodes = []
    for node in copy.graph.node:
        nodes.append(node)
        if _has_bodies(node):
            node.attribute.append(onnx.helper.make_attribute(OPSETS_ATTRIBUTE, opsets))
        if node.op_type in _MULTI_OUTPUT and len(node.output) > 1:
            for index, name in enumerate(node.output):
                if name in outputs:
                    node.output[index] = f"{name}__graphopt_output"
                    nodes.append(onnx.helper.make_node("Identity", [node.output[index]], [name]))
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _has_bodies(node: Any) -> bool:
    return (node.op_type in _CONTROL_FLOW and node.domain in ("", "ai.onnx")) or (
        node.domain,
        node.op_type,
    ) in _WITH_BODIES


def _subgraphs(node: Any) -> Iterator[Any]:
    for attribute in node.attribute:
        if attribute.g.ByteSize():
            yield attribute.g
        yield from attribute.graphs


def outer_reads(node: Any) -> list[str]:
    """The values the subgraphs of ``node`` (If's branches, a Loop's body) read from its scope."""
    return [name for sub in _subgraphs(node) for name in free_names(sub)]


def free_names(body: Any) -> list[str]:
    """The values ``body`` (and the subgraphs inside it) reads from outer scopes, in first-use order."""
    defined = {v.name for v in body.input} | {t.name for t in body.initializer} | {""}
    found: list[str] = []
    for node in body.node:
        reads = list(node.input) + outer_reads(node)
        found.extend(name for name in reads if name not in defined and name not in found)
        defined.update(node.output)
    found.extend(v.name for v in body.output if v.name not in defined and v.name not in found)
    return found


class Body(nn.Module):
    """A converted subgraph: ``forward(*formal inputs, *outer values)`` returns its outputs as a tuple."""

    def __init__(self, module: nn.Module, count: int) -> None:
        super().__init__()
        self.module, self.count = module, count

    def forward(self, *args: Any) -> tuple[torch.Tensor, ...]:
        result = self.module(*args)
        return tuple(result) if isinstance(result, (list, tuple)) else (result,)


def convert_body(
    body: Any,
    graph: Any,
    opsets: list[str],
    bound: dict[str, np.ndarray] | None = None,
    like: dict[str, str] | None = None,
) -> tuple[Body, list[str], Any]:
    """``body`` as a ``Body`` taking its formal inputs (less those ``bound`` to constants) and then the
    outer values it reads (less the constants among them, which it holds); those outer values' names;
    and its checked ModelProto, outputs typed by shape inference."""
    import onnx
    from onnx import helper, numpy_helper

    from graphopt.errors import UnsupportedOnnxError
    from graphopt.onnx.converters import _constant, _is_constant
    from graphopt.onnx.io import import_onnx

    bound = bound or {}
    outer = free_names(body)
    constants = {name: _constant(name, graph) for name in outer if _is_constant(name, graph)}
    reads = [name for name in outer if name not in constants]
    known = dict(graph.value_info)
    like = like or {}
    if any(name not in known for name in [*reads, *like.values()]):  # not shape-inferred (import's diagnostic pass)
        known.update(_inferred_types(graph.proto, opsets))
    inputs = []
    for value in body.input:  # a body input may leave its type out (a Loop's carried values): ``like``'s
        if value.name in bound:
            continue
        source = like.get(value.name)
        if not value.type.HasField("tensor_type") and source is not None:
            if source in known:
                typed = onnx.ValueInfoProto()
                typed.CopyFrom(known[source])
                typed.name = value.name
                value = typed
            elif _is_constant(source, graph):
                array = np.asarray(_numpy(_constant(source, graph)))
                elem = helper.np_dtype_to_tensor_dtype(array.dtype)
                value = helper.make_tensor_value_info(value.name, elem, list(array.shape))
        inputs.append(value)
    for name in reads:
        info = known.get(name)
        if info is None or not info.type.HasField("tensor_type"):
            raise NotImplementedError(f"control flow body reads '{name}', whose type is not known")
        inputs.append(info)
    initializers = list(body.initializer)
    initializers += [numpy_helper.from_array(np.asarray(v), name) for name, v in bound.items()]
    initializers += [numpy_helper.from_array(np.asarray(_numpy(v)), name) for name, v in constants.items()]
    nodes = list(body.node)
    produced = {out for node in nodes for out in node.output}
    outputs = []
    for index, value in enumerate(body.output):
        if value.name not in produced or any(value.name == o.name for o in body.output[:index]):
            renamed = onnx.ValueInfoProto()
            renamed.CopyFrom(value)
            renamed.name = f"{value.name}__graphopt_body_{index}"
            nodes.append(helper.make_node("Identity", [value.name], [renamed.name]))
            value = renamed
        outputs.append(value)
    opset_imports = [helper.make_opsetid(*_split(entry)) for entry in opsets]
    sub = helper.make_model(
        helper.make_graph(nodes, body.name or "body", inputs, outputs, initializers), opset_imports=opset_imports
    )
    sub.ir_version = max(sub.ir_version, 8)
    with contextlib.suppress(Exception):  # types the body's outputs where it leaves them out (If's branches often do)
        sub = onnx.shape_inference.infer_shapes(sub)
    try:
        module, checked = import_onnx(sub)
    except UnsupportedOnnxError as error:  # the body's own nodes, listed without import's hint
        listed = "; ".join(f"{op} at node '{n}'" + (f" ({why})" if why else "") for n, op, why in error.problems)
        raise NotImplementedError(f"its body '{body.name}' has nodes that cannot be imported: {listed}") from None
    return Body(module, len(outputs)), reads, onnx.shape_inference.infer_shapes(checked)


def _inferred_types(graph: Any, opsets: list[str]) -> dict[str, Any]:
    """The ValueInfoProto of every value of ``graph`` that onnx's shape inference types."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(*_split(entry)) for entry in opsets])
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:
        return {}
    return {value.name: value for value in [*inferred.input, *inferred.value_info, *inferred.output]}


def _split(entry: str) -> tuple[str, int]:
    domain, version = entry.rsplit(":", 1)
    return domain, int(version)


def _numpy(value: Any) -> Any:
    return value.detach().numpy() if isinstance(value, torch.Tensor) else value


def _opsets(node: Any) -> list[str]:
    opsets = node.attributes.get(OPSETS_ATTRIBUTE)
    if opsets is None:
        raise NotImplementedError(f"{node.operation_type} converted outside graphopt.onnx.io.import_onnx")
    return [opsets] if isinstance(opsets, str) else list(opsets)


def _graph(node: Any, name: str) -> Any:
    return node.attributes[name].g


def _output_types(model: Any) -> list[tuple[int, tuple[int, ...] | None]]:
    """(elem type, static shape or None) of every graph output of an inferred model."""
    types = []
    for value in model.graph.output:
        tensor = value.type.tensor_type
        static = tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim)
        types.append((tensor.elem_type, tuple(d.dim_value for d in tensor.shape.dim) if static else None))
    return types


def _single(values: tuple[torch.Tensor, ...]) -> Any:
    return values[0] if len(values) == 1 else values


# -- If ------------------------------------------------------------------------------------------


class Inlined(nn.Module):
    """If with a constant condition: the branch it takes."""

    def __init__(self, branch: Body) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, *outer: torch.Tensor) -> Any:
        return _single(self.branch(*outer))


class Selected(nn.Module):
    """If with a run-time condition: both branches, each output picked by ``torch.where``."""

    def __init__(self, then: Body, otherwise: Body, then_reads: int) -> None:
        super().__init__()
        self.then, self.otherwise, self.then_reads = then, otherwise, then_reads

    def forward(self, cond: torch.Tensor, *outer: torch.Tensor) -> Any:
        first, second = self.then(*outer[: self.then_reads]), self.otherwise(*outer[self.then_reads :])
        flag = cond.reshape(()).to(torch.bool)
        return _single(tuple(torch.where(flag, a, b) for a, b in zip(first, second, strict=True)))


def if_converter(node: Any, graph: Any) -> Any:
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    from graphopt.onnx.converters import _constant, _is_constant

    opsets, cond = _opsets(node), node.input_values[0]
    mapping: Callable[[tuple[str, ...]], Any] = lambda inputs: OnnxMapping(inputs, node.output_values)  # noqa: E731
    if _is_constant(cond, graph):
        taken = "then_branch" if bool(_constant(cond, graph).reshape(-1)[0]) else "else_branch"
        branch, reads, _ = convert_body(_graph(node, taken), graph, opsets)
        return OperationConverterResult(torch_module=Inlined(branch), onnx_mapping=mapping(tuple(reads)))
    then, then_reads, then_model = convert_body(_graph(node, "then_branch"), graph, opsets)
    otherwise, else_reads, else_model = convert_body(_graph(node, "else_branch"), graph, opsets)
    first, second = _output_types(then_model), _output_types(else_model)
    if first != second or any(shape is None for _, shape in first):
        raise NotImplementedError(
            "If on a condition computed at run time needs branches whose outputs agree in static shape and dtype "
            f"(then: {first}, else: {second}); control flow that differs by branch is not supported"
        )
    module = Selected(then, otherwise, len(then_reads))
    return OperationConverterResult(torch_module=module, onnx_mapping=mapping((cond, *then_reads, *else_reads)))


# -- Loop ----------------------------------------------------------------------------------------


class Unrolled(nn.Module):
    """Loop unrolled: one converted body per iteration; with ``masked``, the loop's condition (the first
    argument where ``given`` at run time) and the body's stop the carried values changing once false."""

    def __init__(self, bodies: list[Body], carried: int, masked: bool, given: bool) -> None:
        super().__init__()
        self.bodies = nn.ModuleList(bodies)
        self.carried, self.masked, self.given = carried, masked, given

    def forward(self, *args: torch.Tensor) -> Any:
        rest = args[1:] if self.given else args
        running = None
        if self.masked:
            running = args[0].reshape(()).to(torch.bool) if self.given else torch.ones((), dtype=torch.bool)
        values, outer = list(rest[: self.carried]), rest[self.carried :]
        scans: list[list[torch.Tensor]] = []
        for body in self.bodies:
            results = body(*values, *outer)
            new = list(results[1 : 1 + self.carried])
            if running is not None:
                values = [torch.where(running, n, v) for n, v in zip(new, values, strict=True)]
                running = running & results[0].reshape(()).to(torch.bool)
            else:
                values = new
            for index, value in enumerate(results[1 + self.carried :]):
                if len(scans) <= index:
                    scans.append([])
                scans[index].append(value)
        return _single((*values, *(torch.stack(s, dim=0) for s in scans)))


def _evaluated(name: str, graph: Any, opsets: list[str]) -> Any:
    """The value of ``name`` where it is computed from constants alone (a trip count from a Range's
    bounds, through float Div and Ceil, which ``fold_shape_computations`` leaves): the nodes computing it
    run by onnx's reference evaluator; None where a graph input (or a subgraph) reaches it."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    producers = {out: node for node in graph.proto.node for out in node.output}
    initializers = {t.name: t for t in graph.proto.initializer}
    needed: list[Any] = []
    pending, used = [name], set()
    while pending:
        value = pending.pop()
        if value in used or value in initializers or not value:
            continue
        node = producers.get(value)
        if node is None or any(a.type in (5, 10) for a in node.attribute) or len(needed) > 64:
            return None
        used.update(node.output)
        needed.append(node)
        pending.extend(node.input)
    order = [node for node in graph.proto.node if node in needed]
    reads = {i for node in order for i in node.input} & set(initializers)
    model = helper.make_model(
        helper.make_graph(
            order,
            "trip",
            [],
            [helper.make_empty_tensor_value_info(name)],
            [initializers[r] for r in reads],
        ),
        opset_imports=[helper.make_opsetid(*_split(entry)) for entry in opsets],
    )
    try:
        return next(iter(ReferenceEvaluator(model).run(None, {})))
    except Exception:
        return None


def _passes_condition_through(body: Any) -> bool:
    """Whether the body's condition output is its condition input (directly or through Identity) or a
    constant true: the loop then runs its trip count."""
    cond_in, cond_out = body.input[1].name, body.output[0].name
    producers = {out: node for node in body.node for out in node.output}
    while cond_out in producers and producers[cond_out].op_type == "Identity":
        cond_out = producers[cond_out].input[0]
    if cond_out == cond_in:
        return True
    node = producers.get(cond_out)
    if node is not None and node.op_type == "Constant":
        from onnx import numpy_helper

        values = [numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
        return bool(values) and bool(np.all(values[0]))
    return False


def loop_converter(node: Any, graph: Any) -> Any:
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    from graphopt.onnx.converters import _constant, _is_constant

    opsets, body = _opsets(node), _graph(node, "body")
    trip, cond, *initial = node.input_values
    count_value = (
        (_constant(trip, graph) if _is_constant(trip, graph) else _evaluated(trip, graph, opsets)) if trip else None
    )
    if count_value is None:
        raise NotImplementedError(
            "Loop with a trip count known only at run time (or none): control flow that cannot be unrolled "
            "is not supported (give the trip count as a constant, or as an input the backend binds)"
        )
    count = int(np.asarray(count_value).reshape(-1)[0])
    scan_outputs = len(body.output) - 1 - len(initial)
    cond_value = None
    if cond:
        cond_value = _constant(cond, graph) if _is_constant(cond, graph) else _evaluated(cond, graph, opsets)
    runtime_cond = bool(cond) and cond_value is None
    if cond_value is not None and not bool(np.asarray(cond_value).reshape(-1)[0]):
        count = 0
    masked = runtime_cond or not _passes_condition_through(body)
    if masked and scan_outputs:
        raise NotImplementedError(
            "Loop whose condition is computed at run time and which has scan outputs (their length would "
            "depend on it): control flow that cannot be unrolled is not supported"
        )
    if count == 0 and scan_outputs:
        raise NotImplementedError("Loop that runs no iteration but has scan outputs (empty tensors)")
    bodies: list[Body] = []
    reads: list[str] = []
    for index in range(count):
        bound = {body.input[0].name: np.array(index, dtype=np.int64), body.input[1].name: np.array(True)}
        carried = {v.name: outer for v, outer in zip(body.input[2:], initial, strict=False)}
        converted, reads, _ = convert_body(body, graph, opsets, bound, carried)
        bodies.append(converted)
    module = Unrolled(bodies, len(initial), masked, runtime_cond)
    inputs = (*((cond,) if runtime_cond else ()), *initial, *reads)
    return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(inputs, node.output_values))


# -- Scan ----------------------------------------------------------------------------------------


class Scanned(nn.Module):
    """Scan unrolled over its scanned axis (opset 9+; opset 8's leading batch axis loops outside)."""

    def __init__(
        self,
        body: Body,
        states: int,
        input_axes: list[int],
        input_reverse: list[bool],
        output_axes: list[int],
        output_reverse: list[bool],
        batched: bool,
        sizes: tuple[int | None, int | None] = (None, None),
    ) -> None:
        super().__init__()
        self.body, self.states, self.batched = body, states, batched
        # (scan length, batch) where the model declares them, with the axes made non-negative by the
        # converter where the ranks are known: symbolic_trace can then follow the loop
        self.length, self.batch = sizes
        self.input_axes, self.input_reverse = input_axes, input_reverse
        self.output_axes, self.output_reverse = output_axes, output_reverse

    def forward(self, *args: torch.Tensor) -> Any:
        scanned = len(self.input_axes)
        states, xs = list(args[: self.states]), args[self.states : self.states + scanned]
        outer = args[self.states + scanned :]
        if not self.batched:
            return _single(self._scan(states, xs, outer))
        batch = self.batch if self.batch is not None else xs[0].shape[0]
        per_item = [self._scan([s[b] for s in states], [x[b] for x in xs], outer) for b in range(batch)]
        return _single(tuple(torch.stack(parts, dim=0) for parts in zip(*per_item, strict=True)))

    def _scan(self, states: list[torch.Tensor], xs: Any, outer: Any) -> tuple[torch.Tensor, ...]:
        axes = [a if a >= 0 else a % x.dim() for a, x in zip(self.input_axes, xs, strict=True)]
        length = self.length if self.length is not None else xs[0].shape[axes[0]]
        outputs: list[list[torch.Tensor]] = []
        for t in range(length):
            slices = [
                x.select(a, length - 1 - t if r else t) for x, a, r in zip(xs, axes, self.input_reverse, strict=True)
            ]
            results = self.body(*states, *slices, *outer)
            states = list(results[: self.states])
            for index, value in enumerate(results[self.states :]):
                if len(outputs) <= index:
                    outputs.append([])
                outputs[index].append(value)
        stacked = []
        for index, values in enumerate(outputs):
            if self.output_reverse[index]:
                values = values[::-1]
            axis = self.output_axes[index]
            axis = axis if axis >= 0 else axis % (values[0].dim() + 1)
            stacked.append(torch.stack(values, dim=axis))
        return (*states, *stacked)


def scan_converter(node: Any, graph: Any) -> Any:
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult

    opsets, body, a = _opsets(node), _graph(node, "body"), node.attributes
    scanned = int(a["num_scan_inputs"])
    batched = _is_scan8(opsets)
    inputs = list(node.input_values)
    if batched:
        lengths, inputs = inputs[0], inputs[1:]
        if lengths:
            raise NotImplementedError("Scan-8 with sequence_lens: control flow over ragged sequences is not supported")
    states = len(inputs) - scanned
    produced = len(body.output) - states

    def listed(name: str, count: int) -> list[int]:
        values = [int(v) for v in a.get(name, [])]
        return values if values else [0] * count

    input_reverse = [bool(v) for v in listed("directions" if batched else "scan_input_directions", scanned)]
    input_axes = [0] * scanned if batched else listed("scan_input_axes", scanned)
    output_axes = [0] * produced if batched else listed("scan_output_axes", produced)
    output_reverse = (
        [bool(v) for v in listed("scan_output_directions", produced)] if not batched else [False] * produced
    )
    converted, reads, inferred = convert_body(body, graph, opsets)
    from graphopt.onnx.converters import _declared_shape

    first = _declared_shape(graph, inputs[states]) if scanned else None
    ranks = [_declared_shape(graph, name) for name in inputs[states:]]
    input_axes = [a % len(r) if r is not None and not batched else a for a, r in zip(input_axes, ranks, strict=True)]
    out_ranks = [_rank(value) for value in inferred.graph.output[states:]]
    output_axes = [a % (r + 1) if r is not None else a for a, r in zip(output_axes, out_ranks, strict=True)]
    length = batch = None
    if first is not None and input_axes[0] >= 0:
        length = first[1] if batched else first[input_axes[0]]
        batch = first[0] if batched else None
    sizes = (length or None, batch or None)
    module = Scanned(converted, states, input_axes, input_reverse, output_axes, output_reverse, batched, sizes)
    mapping = OnnxMapping((*inputs, *reads), node.output_values)
    return OperationConverterResult(torch_module=module, onnx_mapping=mapping)


def _rank(value: Any) -> int | None:
    tensor = value.type.tensor_type
    return len(tensor.shape.dim) if tensor.HasField("shape") else None


def _is_scan8(opsets: list[str]) -> bool:
    """Whether the model's default opset is 8, where Scan has its batch axis and sequence_lens (Scan-8)."""
    return any(domain in ("", "ai.onnx") and version < 9 for domain, version in map(_split, opsets))


def register(add: Callable[..., None]) -> None:
    """Register If, Loop and Scan through ``add(op, versions, converter)`` (every version since ``versions``)."""
    add("If", (1,), if_converter)
    add("Loop", (1,), loop_converter)
    add("Scan", (8,), scan_converter)
