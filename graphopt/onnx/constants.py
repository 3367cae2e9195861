"""Bind the constant shape operands of a converted ONNX model, so the tracers read them as numbers.

ONNX passes what PyTorch takes as Python numbers (Slice's starts, Squeeze's axes, Tile's repeats,
Expand's shape, Pad's pads, TopK's k, CumSum's axis, ...) as tensor inputs, and exporters write them
as initializers or Constant nodes. onnx2torch keeps them tensor inputs of its modules: buffers read
through ``get_attr`` and Constant modules. Both tracers then see them as traced tensors, and the
converter's ``starts.tolist()`` or ``axes.numpy()`` fails ("data-dependent"; ``.numpy()`` of a fake
tensor), so the model was kept as onnx2torch's opaque graph, which no compiled target can build.

``bind_constant_operands`` gives each converter module that reads such a constant a
``BoundOperands`` wrapper holding the value as a plain tensor (not a buffer): ``symbolic_trace``
and ``torch.export`` run the converter's Python on the real value, so ``x[1:3]`` is traced with the
numbers the file holds. The value and the result are the same; only how the tracer sees the
constant changes. Bound: integer and bool tensors (shapes, axes, indices) up to ``MAX_BOUND``
elements, and scalars of any dtype (Clip's min/max, a Pad value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import fx, nn

#: The largest integer constant bound (a shape or index list; larger ones stay buffers).
MAX_BOUND = 4096


class BoundOperands(nn.Module):
    """``inner`` with the operands at ``positions`` (and keyword operands ``keywords``) fixed.

    The values are plain tensor attributes, not buffers, so a tracer reads them as the real values."""

    positions: dict[int, torch.Tensor]
    keywords: dict[str, torch.Tensor]

    def __init__(self, inner: nn.Module, positions: dict[int, torch.Tensor], keywords: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "positions", dict(positions))
        object.__setattr__(self, "keywords", dict(keywords))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        given = iter(args)
        count = len(args) + len(self.positions)
        merged = [self.positions[i] if i in self.positions else next(given) for i in range(count)]
        return self.inner(*merged, **kwargs, **self.keywords)


def _is_bindable(value: Any) -> bool:
    if not isinstance(value, torch.Tensor) or isinstance(value, nn.Parameter):
        return False
    if value.numel() <= 1:
        return True
    return (not value.is_floating_point() and not value.is_complex()) and value.numel() <= MAX_BOUND


def _constant_value(module: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """The tensor a ``get_attr`` initializer or an onnx2torch Constant module holds, else None."""
    if node.op == "get_attr":
        value: Any = module
        for part in str(node.target).split("."):
            value = getattr(value, part, None)
        return value if isinstance(value, torch.Tensor) else None
    if node.op == "call_module" and not node.args and not node.kwargs:
        constant = module.get_submodule(str(node.target))
        value = getattr(constant, "value", None)
        if type(constant).__name__ == "OnnxConstant" and isinstance(value, torch.Tensor):
            return value
    return None


def bind_constant_operands(module: fx.GraphModule) -> fx.GraphModule:
    """``module`` (onnx2torch's GraphModule) with every small constant operand of a converter module
    bound into it (``BoundOperands``); the graph's inputs and outputs are unchanged."""
    changed = False
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not (node.args or node.kwargs):
            continue
        positions: dict[int, torch.Tensor] = {}
        keywords: dict[str, torch.Tensor] = {}
        for index, arg in enumerate(node.args):
            value = _constant_value(module, arg) if isinstance(arg, fx.Node) else None
            if value is not None and _is_bindable(value):
                positions[index] = value.clone()
        for name, arg in node.kwargs.items():
            value = _constant_value(module, arg) if isinstance(arg, fx.Node) else None
            if value is not None and _is_bindable(value):
                keywords[name] = value.clone()
        if not positions and not keywords:
            continue
        target = str(node.target)
        inner = module.get_submodule(target)
        parent, _, leaf = target.rpartition(".")
        owner = module.get_submodule(parent) if parent else module
        setattr(owner, leaf, BoundOperands(inner, positions, keywords))
        node.args = tuple(arg for index, arg in enumerate(node.args) if index not in positions)
        node.kwargs = {name: arg for name, arg in node.kwargs.items() if name not in keywords}
        changed = True
    if changed:
        module.graph.eliminate_dead_code()
        module.recompile()
    return module


#: ONNX ops' inputs that set a shape, an axis or a count (what PyTorch takes as Python numbers):
#: op -> {input index: operand name}.
SHAPE_OPERANDS: dict[str, dict[int, str]] = {
    "Slice": {1: "starts", 2: "ends", 3: "axes", 4: "steps"},
    "Reshape": {1: "shape"},
    "Squeeze": {1: "axes"},
    "Unsqueeze": {1: "axes"},
    "Tile": {1: "repeats"},
    "Expand": {1: "shape"},
    "Pad": {1: "pads", 3: "axes"},
    "TopK": {1: "K"},
    "CumSum": {1: "axis"},
    "CumProd": {1: "axis"},
    "ConstantOfShape": {0: "input"},
    "Range": {0: "start", 1: "limit", 2: "delta"},
    "OneHot": {1: "depth"},
    "Split": {1: "split"},
    "Trilu": {1: "k"},
    "Resize": {1: "roi", 2: "scales", 3: "sizes"},
    "Upsample": {1: "scales"},
    "CenterCropPad": {1: "shape"},
    "Col2Im": {1: "image_shape", 2: "block_shape"},
    "AffineGrid": {1: "size"},
    "Loop": {0: "M", 1: "cond"},  # the iteration count: a scan output's length
    "HannWindow": {0: "size"},
    "HammingWindow": {0: "size"},
    "BlackmanWindow": {0: "size"},
    # graphopt.onnx.signal and graphopt.onnx.scatter
    "DFT": {1: "dft_length", 2: "axis"},
    "STFT": {1: "frame_step", 3: "frame_length"},
    "MelWeightMatrix": {
        0: "num_mel_bins",
        1: "dft_length",
        2: "sample_rate",
        3: "lower_edge_hertz",
        4: "upper_edge_hertz",
    },
    "MaxUnpool": {2: "output_shape"},
    **{
        op: {1: "axes"}
        for op in (
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceMax",
            "ReduceMean",
            "ReduceMin",
            "ReduceProd",
            "ReduceSum",
            "ReduceSumSquare",
        )
    },
}


def shape_operand_inputs(model: Any) -> list[tuple[str, str]]:
    """The graph inputs of an ONNX model that a node reads as a shape operand: (input name,
    "Op operand at node 'name'"), in graph order. A compiled target needs these constant."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = {value.name for value in model.graph.input if value.name not in initializers}
    found: list[tuple[str, str]] = []
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            continue
        for position, operand in SHAPE_OPERANDS.get(node.op_type, {}).items():
            if position < len(node.input) and node.input[position] in inputs:
                found.append((node.input[position], f"{node.op_type} {operand} at node '{node.name or f'#{index}'}'"))
    return found


class HostArray(np.ndarray):
    """A numpy array answering the few tensor methods converters call on a shape operand (``numel``,
    ``dim``, ``detach``, ``cpu``, ``numpy``), so a converter written for a tensor reads it unchanged."""

    def numel(self) -> int:
        return int(self.size)

    def dim(self) -> int:
        return int(self.ndim)

    def detach(self) -> HostArray:
        return self

    def cpu(self) -> HostArray:
        return self

    def numpy(self) -> np.ndarray:
        return np.asarray(self)


class HostOperands(nn.Module):
    """One of graphopt's own converter modules with its constant shape operands fixed as numpy arrays.

    graphopt's converters read a shape operand only through ``.reshape(-1)``, ``.tolist()`` and
    ``int()``, which a numpy array answers the same way; unlike a tensor, ``torch.export`` leaves a numpy
    array a plain value, so a converter with a dtype branch (which ``symbolic_trace`` cannot follow) is
    still exported with the numbers."""

    layout: list[Any]

    def __init__(self, inner: nn.Module, layout: list[Any]) -> None:
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "layout", layout)  # per operand: a numpy array, None (absent), or "input"

    def forward(self, *args: Any) -> Any:
        given = iter(args)
        return self.inner(*[next(given) if isinstance(v, str) else v for v in self.layout])


def host_shape_operands(op: str, converter: Any) -> Any:
    """``converter`` for ``op``, wrapping the graphopt module it returns in ``HostOperands`` where the
    node's shape operands (``SHAPE_OPERANDS``) are constants, or where an optional input before a given
    one is absent (``Pad(x, pads, "", axes)``: onnx2torch passes the inputs after a gap by the names of
    ``forward``'s parameters, which a graphopt ``Function(*args)`` does not have, so ``axes`` was
    dropped). onnx2torch's own modules are left as they are (``bind_constant_operands`` binds theirs)."""
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

    positions = {} if op == "Range" else SHAPE_OPERANDS.get(op, {})  # Range's operands are its values

    def convert(node: Any, graph: Any) -> Any:
        converted = converter(node, graph)
        module, mapping = converted.torch_module, converted.onnx_mapping
        if not type(module).__module__.startswith("graphopt") or tuple(mapping.inputs) != tuple(node.input_values):
            return converted
        layout: list[Any] = []
        for index, name in enumerate(node.input_values):
            value = None
            if name and index in positions:
                try:
                    value = get_const_value(name, graph)
                except KeyError:
                    value = None
            if value is not None:
                array = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
                layout.append(array.view(HostArray))
            else:
                layout.append("input" if name else None)
        if all(isinstance(v, str) for v in layout):
            return converted
        while layout and layout[-1] is None:  # trailing absent inputs: the module's defaults
            layout.pop()
        inputs = tuple(name for name, v in zip(node.input_values, layout, strict=False) if isinstance(v, str))
        return OperationConverterResult(
            torch_module=HostOperands(module, layout), onnx_mapping=OnnxMapping(inputs=inputs, outputs=mapping.outputs)
        )

    return convert


def register_host_operands(registry: dict[Any, Any]) -> None:
    """Wrap every registered default-domain converter with ``host_shape_operands``; idempotent."""
    for description, converter in list(registry.items()):
        if description.domain == "" and not getattr(converter, "graphopt_host_operands", False):
            wrapped = host_shape_operands(description.operation_type, converter)
            wrapped.graphopt_host_operands = True  # type: ignore[attr-defined]
            registry[description] = wrapped


class StaticSqueeze(nn.Module):
    """ONNX Squeeze (13+) with constant ``axes`` (negative ones count from the end)."""

    def __init__(self, axes: list[int]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis in sorted({a % x.dim() for a in self.axes}, reverse=True):
            x = x.squeeze(axis)
        return x


class StaticUnsqueeze(nn.Module):
    """ONNX Unsqueeze (13+) with constant ``axes``, which index the output (rank + len(axes))."""

    def __init__(self, axes: list[int]) -> None:
        super().__init__()
        self.axes = axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = x.dim() + len(self.axes)
        for axis in sorted(a % rank for a in self.axes):
            x = x.unsqueeze(axis)
        return x


def register_static_axes(registry: dict[Any, Any], versions: Any) -> None:
    """Squeeze and Unsqueeze (13+) with constant ``axes`` as ``StaticSqueeze`` / ``StaticUnsqueeze``:
    onnx2torch's modules iterate the axes tensor into ``squeeze(dim=tensor)``, which no tracer turns into
    a number. ``versions(op, first)`` gives the opset versions to replace."""
    from onnx2torch.node_converters.registry import OperationDescription
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, get_const_value

    def static(op: str, module: type[nn.Module], general: Any) -> Any:
        def convert(node: Any, graph: Any) -> Any:
            names = node.input_values
            if len(names) < 2 or not names[1]:
                return general(node, graph)
            try:
                axes = get_const_value(names[1], graph)
            except KeyError:
                return general(node, graph)
            values = [int(a) for a in torch.as_tensor(axes).reshape(-1).tolist()]
            if op == "Squeeze" and not values:
                return general(node, graph)
            mapping = OnnxMapping(inputs=(names[0],), outputs=node.output_values)
            return OperationConverterResult(torch_module=module(values), onnx_mapping=mapping)

        return convert

    for op, module in (("Squeeze", StaticSqueeze), ("Unsqueeze", StaticUnsqueeze)):
        for version in versions(op, 13):
            description = OperationDescription("", op, version)
            general = registry.get(description) or registry.get(OperationDescription("", op, 13))
            if general is not None and not getattr(general, "graphopt_static_axes", False):
                convert = static(op, module, general)
                convert.graphopt_static_axes = True  # type: ignore[attr-defined]
                registry[description] = convert


#: Ops never folded: random, control flow and sequence ops (their values are not fixed by their inputs,
#: or are not tensors).
_NOT_FOLDED = (
    "Random",
    "Bernoulli",
    "Multinomial",
    "Dropout",
    "If",
    "Loop",
    "Scan",
    "Sequence",
    "Optional",
    "QuantizeLinear",  # QDQ pairs stay: they become graphopt's int8 ops
    "DequantizeLinear",
)

#: The dtypes a folded value may have (numpy's own, which onnx2torch reads into torch).
_FOLDED_DTYPES = tuple(
    np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
)

#: The most elements a folded value may have: shape computations are small; a large constant (a
#: ConstantOfShape fill) stays a node rather than growing the file.
MAX_FOLDED = 4096


#: Rounds of folding: a folded shape (ConstantOfShape's, Expand's) gives shape inference the static
#: shape of values it could not infer before, whose ``Shape`` then folds in the next round.
_FOLD_ROUNDS = 8


def fold_shape_computations(model: Any) -> Any:
    """``_fold_shape_computations_once`` until nothing more folds (at most ``_FOLD_ROUNDS`` rounds):
    a zero padding made by ``ConstantOfShape(Concat(Shape(x), ...))``, concatenated to the input and
    then sliced by its own ``Shape`` (CausalConvWithState's body), needs two."""
    for _ in range(_FOLD_ROUNDS):
        folded = _fold_shape_computations_once(model)
        if folded is model:
            break
        model = folded
    return model


def _fold_shape_computations_once(model: Any) -> Any:
    """``model`` with every ``Shape`` (and ``Size``) of a value whose shape is static replaced by its
    constant, and every node whose inputs are all constants and whose outputs are integers or bools
    then evaluated (onnx's reference evaluator) into an initializer, so Reshape targets and Slice bounds computed from shapes (what
    function bodies and exporters write) are constants for the converters. Nodes producing graph
    outputs, large values or values of ops in ``_NOT_FOLDED`` stay. Returns ``model`` itself when
    nothing folds."""
    import onnx
    from onnx import numpy_helper

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return model
    graph = inferred.graph
    shapes: dict[str, list[int] | None] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        if value.type.WhichOneof("value") == "tensor_type" and tensor.HasField("shape"):
            static = all(d.WhichOneof("value") == "dim_value" for d in tensor.shape.dim)
            shapes[value.name] = [int(d.dim_value) for d in tensor.shape.dim] if static else None
    opset = next((int(e.version) for e in model.opset_import if e.domain in ("", "ai.onnx")), 0)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    outputs = {value.name for value in model.graph.output}
    folded: dict[str, np.ndarray] = {}
    kept = []
    for node in model.graph.node:
        value = _fold(node, constants, shapes, outputs, opset)
        if value is None:
            kept.append(node)
            continue
        for name, array in zip(node.output, value, strict=True):
            constants[name] = folded[name] = array
    if not folded:
        return model
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(kept)
    from graphopt.onnx.control_flow import outer_reads

    used = {name for node in kept for name in [*node.input, *outer_reads(node)]} | outputs
    result.graph.initializer.extend(
        numpy_helper.from_array(array, name) for name, array in folded.items() if name in used
    )
    return result


def _fold(
    node: Any, constants: dict[str, Any], shapes: dict[str, Any], outputs: set[str], opset: int
) -> list[Any] | None:
    """The output values of ``node`` if it folds (see ``fold_shape_computations``), else None."""
    if "" in node.output:
        return None
    if node.domain not in ("", "ai.onnx") or any(part in node.op_type for part in _NOT_FOLDED):
        return None
    if any(name in outputs for name in node.output) or any(a.type in (5, 10) for a in node.attribute):
        return None  # a graph output, or a node with a subgraph attribute
    if node.op_type in ("Shape", "Size") and node.input[0] not in constants:
        shape = shapes.get(node.input[0])
        if shape is None:
            return None
        if node.op_type == "Size":
            return [np.array(int(np.prod(shape)), dtype=np.int64)]
        attributes = {a.name: a.i for a in node.attribute}
        start, end = attributes.get("start", 0), attributes.get("end", len(shape))
        return [np.array(shape[slice(start, end)], dtype=np.int64)]
    if node.op_type == "Constant":
        evaluated = _evaluate(node, {}, opset)
    elif not node.input or not all(name == "" or name in constants for name in node.input):
        return None
    else:
        evaluated = _evaluate(node, {name: constants[name] for name in node.input if name}, opset)
    if evaluated is None or any(np.asarray(v).dtype.kind not in "biu" for v in evaluated):
        return None  # a float value (a dequantized weight, a scale) stays what the file says: shapes are integers
    if any(np.asarray(v).size > MAX_FOLDED or np.asarray(v).dtype not in _FOLDED_DTYPES for v in evaluated):
        return None  # large, or of a type torch reads differently (bfloat16, float8, strings: ml_dtypes, objects)
    return [np.asarray(v) for v in evaluated]


def _evaluate(node: Any, feeds: dict[str, Any], opset: int) -> list[Any] | None:
    """One node run by onnx's reference evaluator on constant ``feeds``; None where it cannot."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        graph = onnx.helper.make_graph(
            [node],
            "fold",
            [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in feeds],
            [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in node.output],
        )
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        return list(ReferenceEvaluator(model).run(None, feeds))
    except Exception:
        return None
