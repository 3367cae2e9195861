"""ONNX in and out: read a ``.onnx`` file into a torch module graphopt captures, write a graph as ONNX.

Import is onnx2torch's ``convert`` (ONNX -> ``torch.fx.GraphModule`` of torch modules), which
graphopt then captures like any PyTorch model, so every pass, the viewer and every target apply.
Around it graphopt adds what a user needs from a converter that fails deep inside:

- one-line errors for a missing, truncated or non-ONNX file, missing external data, an invalid
  model (``onnx.checker``) and an opset outside 7..newest;
- every node onnx2torch cannot convert, listed at once with its name, op and opset, before any
  conversion starts;
- converters for newer opset versions of ops whose new version only added tensor types (onnx2torch
  registers e.g. Identity up to opset 16 and refuses an opset-19 Identity): the older converter is
  registered for the newer version through onnx2torch's own ``add_converter``; and converters
  onnx2torch lacks (``graphopt.onnx.converters``), QuantizeLinear/DequantizeLinear among them, so a
  QDQ model imports as graphopt's own quantization ops and lowers to the targets' int8 kernels;
- onnx2torch imports torchvision for its NonMaxSuppression and RoiAlign converters; PyPI's
  torchvision does not load with the pinned CPU torch, so when torchvision cannot be imported
  graphopt imports onnx2torch without it and reports RoiAlign as unsupported (NonMaxSuppression has
  graphopt's own converter, ``graphopt.onnx.nms``). onnx2torch is
  therefore not a declared dependency (pip would pull that torchvision, which then breaks every
  import of transformers too): ``make venv`` installs it with ``--no-deps``, and without it ONNX
  import is one InputError saying so.

Export is ``torch.onnx.export`` of the graph's module (the TorchScript exporter: about 0.2 s for a
small model where the torch.export-based one takes 2-10 s), checked with ``onnx.checker``; graphopt's
quantization ops are written in ONNX Runtime's QDQ format (``_register_qdq_symbolics``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx

from graphopt.errors import GraphoptError, InputError, UnsupportedOnnxError
from graphopt.onnx import control_flow
from graphopt.onnx.constants import bind_constant_operands, fold_shape_computations
from graphopt.onnx.narrow import NUMPY_CARRIERS, ONNX_TYPES, cast_narrow

#: The oldest default-domain opset graphopt imports (onnx2torch's converters start at opset 1-9).
MIN_OPSET = 7

#: Ops whose newer versions changed, besides types, only what does not apply to onnx2torch's converter:
#: Cast's ``saturate`` and ``round_mode`` act on float8/float4 targets only, which it does not convert;
#: MaxPool-22's documentation adds that windows starting in the right padding are ignored, which is
#: what PyTorch's ``max_pool`` (ceil_mode) already does; Mod-28 spells out the float special cases
#: (signed zeros, infinities, NaN), which ``torch.remainder``/``torch.fmod`` follow. Other ops are aliased only when
#: ``_type_only_change`` holds.
TYPES_ONLY_IN_EFFECT = ("Cast", "MaxPool", "Mod")

_HINT = (
    "re-export the model without them, or at another opset (onnx.version_converter.convert_version); "
    "benchmarks/results/onnx_conformance.md lists the ops that import"
)

#: Ops that need torchvision in onnx2torch (NonMaxSuppression and RoiAlign have graphopt's own:
#: ``graphopt.onnx.nms``, ``graphopt.onnx.sampling``).
_TORCHVISION_OPS: tuple[str, ...] = ()

_TORCH_DTYPES = {
    "tensor(float)": torch.float32,
    "tensor(double)": torch.float64,
    "tensor(float16)": torch.float16,
    "tensor(bfloat16)": torch.bfloat16,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(int16)": torch.int16,
    "tensor(int8)": torch.int8,
    "tensor(uint8)": torch.uint8,
    "tensor(bool)": torch.bool,
}
#: the types graphopt carries in a wider dtype (``graphopt.onnx.narrow``): float8 inputs are given as float32
_CARRIED_INPUTS = {f"tensor({name})": name for name in NUMPY_CARRIERS}
_TORCH_DTYPES.update({f"tensor({name})": getattr(torch, carrier) for name, carrier in NUMPY_CARRIERS.items()})


@dataclass(frozen=True)
class OnnxInput:
    """One graph input of an ONNX model: ``shape`` has a str for a symbolic dimension, None for an unknown one."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: torch.dtype | None
    type_name: str

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"'{self.name}' {dims or 'scalar'} {self.type_name}"


# -- reading -----------------------------------------------------------------------------------


def is_onnx_spec(model: Any) -> bool:
    """Whether ``model`` names an ONNX model: a path ending in ``.onnx`` or an ``onnx.ModelProto``."""
    if isinstance(model, (str, Path)):
        return Path(model).suffix.lower() == ".onnx"
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def read_onnx(source: Any) -> Any:
    """The checked ``onnx.ModelProto`` of a path (external data loaded) or of a ModelProto."""
    import onnx

    if not isinstance(source, (str, Path)):
        model = source
        where = "the ONNX model"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise InputError(f"ONNX file not found: {path}")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:
            raise InputError(
                f"{path} is not a readable ONNX model (truncated, or not ONNX): {_one_line(error)}"
            ) from error
        if _uses_external_data(model):
            try:
                onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
            except Exception as error:  # OSError, or onnx's ValidationError for a missing file
                raise InputError(
                    f"{path}: cannot load its external data (keep the data files beside the model): {_one_line(error)}"
                ) from error
    if not model.graph.output or not model.opset_import:
        raise InputError(f"{where} is not an ONNX model: it has no graph outputs or no opset (truncated file?)")
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        inferred = _with_inferred_output_shapes(model, error)
        if inferred is None:
            raise InputError(f"{where} is not a valid ONNX model: {_one_line(error)}") from error
        model = inferred
    return model


def _with_inferred_output_shapes(model: Any, error: Exception) -> Any:
    """``model`` with the shapes onnx's inference gives where a graph output declares a tensor type but no
    shape, if that is all the checker refused; else None. Such files are common (the onnx backend suite's
    ``_expanded`` Range cases; exporters that leave output shapes out) and ONNX Runtime runs them."""
    import onnx

    if "Field 'shape' of 'type' is required but missing" not in str(error):
        return None
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(inferred)
    except Exception:
        return None
    return inferred


def _uses_external_data(model: Any) -> bool:
    import onnx

    return any(
        tensor.data_location == onnx.TensorProto.EXTERNAL
        for tensor in onnx.external_data_helper._get_all_tensors(model)
    )


def default_opset(model: Any) -> int:
    """The model's default-domain opset; the newest for a model importing only other domains
    (ai.onnx.ml, ai.onnx.preview.training): it has no default-domain node for the version to change."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return _newest_opset()


def onnx_inputs(model: Any) -> list[OnnxInput]:
    """The model's real inputs (initializers listed as inputs are weights, not inputs)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            inputs.append(OnnxInput(value.name, (), None, kind or "unknown"))
            continue
        tensor = value.type.tensor_type
        import onnx

        type_name = f"tensor({onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)})" if tensor.elem_type else "?"
        type_name = type_name.replace("float32", "float").replace("float64", "double")
        dims: list[int | str | None] = []
        for dim in tensor.shape.dim:
            which = dim.WhichOneof("value")
            dims.append(int(dim.dim_value) if which == "dim_value" else (dim.dim_param or None))
        inputs.append(OnnxInput(value.name, tuple(dims), _TORCH_DTYPES.get(type_name), type_name))
    return inputs


def inputs_like_onnx(model: Any, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded random example inputs of the shapes and dtypes an ONNX model declares."""
    from graphopt.model_loading import random_tensor

    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for spec in onnx_inputs(model):
        if spec.dtype is None:
            raise InputError(f"ONNX input {spec.describe()} is not a tensor of a supported dtype")
        if not all(isinstance(d, int) for d in spec.shape):
            raise InputError(
                f"ONNX input {spec.describe()} has symbolic or unknown dimensions: give the shapes, "
                "e.g. --input-shape 1x3x224x224 (once per input), or example inputs"
            )
        tensor = random_tensor(tuple(int(d) for d in spec.shape), spec.dtype, generator)  # type: ignore[arg-type]
        if spec.type_name in _CARRIED_INPUTS:  # values of the carried type, not any of the carrier's
            tensor = cast_narrow(tensor, ONNX_TYPES[_CARRIED_INPUTS[spec.type_name]])
        tensors.append(tensor)
    return tuple(tensors)


def check_inputs(model: Any, inputs: tuple[torch.Tensor, ...]) -> None:
    """Refuse example inputs whose number, dtype or fixed dimensions differ from the model's inputs."""
    specs = onnx_inputs(model)
    if len(inputs) != len(specs):
        raise InputError(
            f"the ONNX model takes {len(specs)} input(s) ({', '.join(s.describe() for s in specs)}), got {len(inputs)}"
        )
    for spec, tensor in zip(specs, inputs, strict=True):
        got = f"{'x'.join(map(str, tensor.shape)) or 'scalar'} {str(tensor.dtype).replace('torch.', '')}"
        if spec.dtype is not None and tensor.dtype != spec.dtype:
            carried = _CARRIED_INPUTS.get(spec.type_name)
            hint = f": give {str(spec.dtype).replace('torch.', '')} holding {carried} values" if carried else ""
            raise InputError(f"ONNX input {spec.describe()} was given {got} (wrong dtype{hint})")
        fixed = len(spec.shape) == tensor.dim() and all(
            not isinstance(d, int) or d == size for d, size in zip(spec.shape, tensor.shape, strict=True)
        )
        if spec.shape and not fixed:
            raise InputError(f"ONNX input {spec.describe()} was given {got} (wrong shape)")


# -- converting --------------------------------------------------------------------------------


def _onnx2torch() -> Any:
    """onnx2torch, imported without torchvision if that cannot be imported (see the module docstring)."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    if importlib.util.find_spec("onnx2torch") is None:
        raise InputError(
            "importing ONNX needs onnx2torch; install it without its dependencies: "
            "pip install --no-deps onnx2torch==1.5.15 (its torchvision requirement is a CUDA build "
            "that does not load beside the CPU torch)"
        )
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or PyPI's CUDA build failing to load with the CPU torch
        with _without_torchvision():
            module = importlib.import_module("onnx2torch")
    else:
        module = importlib.import_module("onnx2torch")
    from graphopt.onnx import converters as onnx_converters
    from graphopt.onnx.tensors import patch_onnx_tensor

    onnx_converters.register()
    _register_type_only_versions()
    patch_onnx_tensor()
    return module


def torchvision_available() -> bool:
    module = sys.modules.get("onnx2torch.node_converters.nms")
    return module is not None and not getattr(module.torchvision, "graphopt_stand_in", False)


@contextlib.contextmanager
def _without_torchvision() -> Iterator[None]:
    """A stand-in ``torchvision`` while onnx2torch imports; its ops raise if a converted model calls them."""

    def missing(*args: Any, **kwargs: Any) -> Any:
        raise GraphoptError("this ONNX op needs torchvision, which cannot be imported here")

    stand_in = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.box_convert = ops.roi_align = missing  # type: ignore[attr-defined]
    stand_in.ops = ops  # type: ignore[attr-defined]
    stand_in.graphopt_stand_in = True  # type: ignore[attr-defined]
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "torchvision"}
    sys.modules.update({"torchvision": stand_in, "torchvision.ops": ops})
    try:
        yield
    finally:
        for name in ("torchvision", "torchvision.ops"):
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def _register_type_only_versions() -> None:
    """Alias onnx2torch's newest converter of an op to the op's newer versions that changed only types."""
    import onnx
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter

    newest = _newest_opset()
    by_op: dict[str, list[int]] = {}
    for description in list(_CONVERTER_REGISTRY):
        if description.domain == "":
            by_op.setdefault(description.operation_type, []).append(description.version)
    for op, versions in by_op.items():
        base = max(versions)
        converter = _CONVERTER_REGISTRY[OperationDescription("", op, base)]
        found = {_since_version(op, v) for v in range(base + 1, newest + 1)}
        since = sorted(v for v in found if v is not None and v != base)
        for version in since:
            if op not in TYPES_ONLY_IN_EFFECT and not _type_only_change(
                onnx.defs.get_schema(op, base), onnx.defs.get_schema(op, version)
            ):
                break  # a real change: this and every later version stay unsupported
            add_converter(operation_type=op, version=version)(converter)


def _since_version(op: str, version: int) -> int | None:
    import onnx

    try:
        return int(onnx.defs.get_schema(op, version).since_version)
    except Exception:
        return None


def _type_only_change(old: Any, new: Any) -> bool:
    """Whether two versions of an op's schema differ in their type constraints only: same attributes
    (names, defaults, required), inputs, outputs, arities and documentation."""

    def signature(schema: Any) -> tuple[Any, ...]:
        attributes = sorted((k, str(a.default_value), a.required) for k, a in schema.attributes.items())
        inputs = [(i.name, i.option) for i in schema.inputs]
        outputs = [(o.name, o.option) for o in schema.outputs]
        return (
            attributes,
            inputs,
            outputs,
            schema.min_input,
            schema.max_input,
            schema.min_output,
            schema.max_output,
            schema.doc,
        )

    return signature(old) == signature(new)


def unsupported_nodes(model: Any) -> list[tuple[str, str, str | None]]:
    """Every node onnx2torch has no converter for: (node name, "Op (opset N)", reason or None)."""
    onnx2torch = _onnx2torch()
    get_converter = onnx2torch.node_converters.get_converter
    opsets = {entry.domain or "": int(entry.version) for entry in model.opset_import}
    opsets.setdefault("", opsets.get("ai.onnx", 0))
    problems: list[tuple[str, str, str | None]] = []
    for index, node in enumerate(model.graph.node):
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        version = opsets.get(domain)
        if version is None:
            problems.append((node.name or f"#{index}", f"{domain}.{node.op_type}", "its domain is not imported"))
            continue
        label = f"{node.op_type} (opset {version})" if not domain else f"{domain}.{node.op_type}"
        name = node.name or f"#{index}"
        reason: str | None = None
        if node.op_type in _TORCHVISION_OPS and not domain:
            _onnx2torch()
            if not torchvision_available():
                reason = "needs torchvision"
        if reason is None:
            try:
                get_converter(operation_type=node.op_type, version=version, domain=domain or "")
                continue
            except NotImplementedError:
                reason = None
        problems.append((name, label, reason))
    return problems


def import_onnx(source: Any) -> tuple[fx.GraphModule, Any]:
    """ONNX (a path or ModelProto) -> ``(torch.fx.GraphModule, checked ModelProto)``, or one InputError.

    A node with no converter, or whose converter refuses its attributes, is replaced by its op's
    function body when the onnx schema defines the op as a function (``expand_functions``)."""
    model = read_onnx(source)
    opset = default_opset(model)
    newest = _newest_opset()
    if opset < MIN_OPSET and _unchanged_since(model, opset):
        model, opset = _at_opset(model, MIN_OPSET), MIN_OPSET
    if not MIN_OPSET <= opset <= newest:
        raise InputError(
            f"ONNX opset {opset} is not supported (graphopt imports opsets {MIN_OPSET} to {newest}); "
            "convert the model with onnx.version_converter.convert_version"
        )
    problems = unsupported_nodes(model)
    converted = expand_functions(model, {name for name, _, _ in problems}) if problems else model
    converted = fold_shape_computations(converted)
    if problems and unsupported_nodes(converted):
        raise UnsupportedOnnxError(problems, _HINT)
    onnx2torch = _onnx2torch()
    converted = control_flow.prepare(converted)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            module = onnx2torch.convert(converted)
        except Exception as error:
            failing = _failing_nodes(converted)
            expanded = expand_functions(converted, {name for name, _, _ in failing}) if failing else converted
            if expanded is converted or unsupported_nodes(expanded):
                raise _conversion_error(converted, error) from error
            try:
                module = onnx2torch.convert(expanded)
            except Exception:
                raise _conversion_error(converted, error) from error
    module.eval()
    return bind_constant_operands(module), model


def _unchanged_since(model: Any, opset: int) -> bool:
    """Whether every default-domain op of ``model`` (at ``opset``, older than ``MIN_OPSET``) is the same
    version at ``MIN_OPSET``: such a model means the same at ``MIN_OPSET`` (``Not`` has one version)."""
    ops = {node.op_type for node in model.graph.node if node.domain in ("", "ai.onnx")}
    return all(
        _since_version(op, opset) is not None and _since_version(op, opset) == _since_version(op, MIN_OPSET)
        for op in ops
    )


def _at_opset(model: Any, opset: int) -> Any:
    """A copy of ``model`` importing the default domain at ``opset``."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for entry in copy.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    return copy


#: The domain expanded nodes are given while onnx's inliner replaces them by their function bodies.
_EXPANSION_DOMAIN = "graphopt.expand"


def expand_functions(model: Any, names: set[str]) -> Any:
    """A copy of ``model`` in which each node named in ``names`` (``#i`` for the unnamed i-th) whose op
    the onnx schema defines as a function at the model's opset is replaced by that function's body
    (context-dependent functions get the node's attributes and input types from shape inference;
    attributes the node leaves out get the schema's defaults); ``model`` itself when none is.
    Bodies can hold further function ops: they are expanded in turn, a few levels deep."""
    import onnx
    import onnx.inliner

    opset = default_opset(model)
    result = model
    for depth in range(4):
        copy = onnx.ModelProto()
        copy.CopyFrom(result)
        try:
            types = _value_types(copy)
        except Exception:
            return result
        functions = []
        for index, node in enumerate(copy.graph.node):
            name = node.name or f"#{index}"
            if name not in names or node.domain not in ("", "ai.onnx"):
                continue
            function = _schema_function(node, opset, types)
            if function is None:
                continue
            function.name, function.domain = f"{node.op_type}_{depth}_{index}", _EXPANSION_DOMAIN
            node.op_type, node.domain = function.name, _EXPANSION_DOMAIN
            functions.append(function)
        if not functions:
            break
        copy.functions.extend(functions)
        copy.opset_import.append(onnx.helper.make_opsetid(_EXPANSION_DOMAIN, 1))
        try:
            inlined = onnx.inliner.inline_local_functions(copy)
        except Exception:
            break
        if any(node.domain == _EXPANSION_DOMAIN for node in inlined.graph.node):
            break
        kept = [entry for entry in inlined.opset_import if entry.domain != _EXPANSION_DOMAIN]
        del inlined.opset_import[:]
        inlined.opset_import.extend(kept)
        result = inlined
        problems = unsupported_nodes(result)
        names = {name for name, _, _ in problems}
        if not names:
            break
    return result


def _value_types(model: Any) -> dict[str, Any]:
    """The TypeProto of every value of the main graph shape inference can type."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {value.name: value.type for value in [*graph.input, *graph.value_info, *graph.output]}
    for tensor in graph.initializer:
        types.setdefault(tensor.name, onnx.helper.make_tensor_type_proto(tensor.data_type, tensor.dims))
    return types


def _schema_function(node: Any, opset: int, types: dict[str, Any]) -> Any:
    """The FunctionProto the onnx schema of ``node``'s op defines at ``opset`` (None when it has none),
    its attributes bound from the node, the schema's defaults filling those the node omits."""
    import onnx

    try:
        schema = onnx.defs.get_schema(node.op_type, opset)
    except Exception:
        return None
    given = {attribute.name for attribute in node.attribute}
    for name, attribute in schema.attributes.items():
        if name not in given and attribute.default_value.type != onnx.AttributeProto.UNDEFINED:
            node.attribute.append(attribute.default_value)
    plain = [v for v in schema.function_opset_versions if v <= opset]  # type: ignore[attr-defined]
    dependent = [v for v in schema.context_dependent_function_opset_versions if v <= opset]  # type: ignore[attr-defined]
    function = onnx.FunctionProto()
    if dependent and (not plain or max(dependent) >= max(plain)):
        if not all(name in types for name in node.input if name):
            return None
        input_types = [types[name].SerializeToString() if name else b"" for name in node.input]
        try:
            body = schema.get_context_dependent_function_with_opset_version(  # type: ignore[attr-defined]
                max(dependent), node.SerializeToString(), input_types
            )
        except Exception:
            return None
    elif plain:
        body = schema.get_function_with_opset_version(max(plain))  # type: ignore[attr-defined]
    else:
        return None
    function.ParseFromString(body)
    if not function.node:
        return None
    # The body written for opset max(versions) is the op's definition at every opset up to the
    # next version that lists one, so it imports the model's opset (onnx's inliner requires that).
    for entry in function.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    return function


def _failing_nodes(model: Any) -> list[tuple[str, str, str | None]]:
    """The nodes whose onnx2torch converter raises on their attributes: (node name, op, reason)."""
    onnx2torch = _onnx2torch()
    from onnx2torch.onnx_graph import OnnxGraph

    try:
        graph = OnnxGraph(model.graph)
        opset = default_opset(model)
        failing: list[tuple[str, str, str | None]] = []
        for index, (proto, node) in enumerate(zip(model.graph.node, graph.nodes.values(), strict=True)):
            name = proto.name or f"#{index}"
            converter = onnx2torch.node_converters.get_converter(
                operation_type=node.operation_type, version=opset, domain=node.domain
            )
            try:
                converter(node, graph)
            except Exception as node_error:
                failing.append((name, f"{node.operation_type} (opset {opset})", _one_line(node_error)))
    except Exception:
        return []
    return failing


def _newest_opset() -> int:
    import onnx

    return int(onnx.defs.onnx_opset_version())


def _conversion_error(model: Any, error: Exception) -> GraphoptError:
    """onnx2torch failed inside a converter (an attribute it does not handle): name every such node."""
    failing = _failing_nodes(model)
    if failing:
        return UnsupportedOnnxError(failing, _HINT)
    return InputError(f"cannot convert the ONNX model: {_one_line(error)}")


# -- writing -----------------------------------------------------------------------------------


def export_onnx(graph: Any, path: str | Path, example_inputs: Any = None, *, opset: int | None = None) -> Path:
    """Write ``graph`` (a captured or optimized ``graphopt.Graph``) as ONNX to ``path``; returns the path.

    The file is checked with ``onnx.checker.check_model(full_check=True)`` and written only when it
    passes (the parent folder is created). ``example_inputs`` default to the graph's own. An int8
    graph is written in ONNX Runtime's QDQ conventions (``graphopt.onnx.qdq_export``), so ONNX
    Runtime runs its Conv/Gemm layers as QLinearConv/QGemm.

    >>> optimized, _ = graphopt.optimize(graphopt.capture(model, x), "O2")
    >>> graphopt.export_onnx(optimized, "model.onnx")
    """
    import onnx

    from graphopt.capture import normalize_inputs, quiet_torch
    from graphopt.onnx.qdq_export import to_onnxruntime_qdq

    _register_qdq_symbolics()
    inputs = normalize_inputs(example_inputs) if example_inputs is not None else tuple(graph.example_inputs)
    target = Path(path)
    if target.suffix.lower() != ".onnx":
        raise InputError(f"ONNX output path should end in .onnx: {target}")
    buffer = io.BytesIO()
    names = [f"input_{i}" if not n.name.isidentifier() else n.name for i, n in enumerate(graph.input_nodes())]
    try:
        with quiet_torch(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph.module,
                inputs,
                buffer,  # type: ignore[arg-type]
                input_names=names,
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )
        model = onnx.load_from_string(buffer.getvalue())
        to_onnxruntime_qdq(model)
        onnx.checker.check_model(model, full_check=True)
    except GraphoptError:
        raise
    except Exception as error:
        raise GraphoptError(f"cannot export graph '{graph.name}' to ONNX: {_one_line(error)}") from error
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(model.SerializeToString())
    return target


_QDQ_REGISTERED = False


def _register_qdq_symbolics() -> None:
    """Teach torch.onnx's exporter graphopt's quantization ops, as ONNX Runtime's QDQ format writes them:
    ``quantize``/``dequantize`` -> QuantizeLinear/DequantizeLinear with a float32 scale and an int8/uint8
    zero point; ``dequantize_per_channel`` (int8 weights, symmetric) -> DequantizeLinear with a scale
    per channel along ``axis``; ``fake_quantize_dynamic`` -> DynamicQuantizeLinear + DequantizeLinear
    (uint8 with its zero point shifted by 128 dequantizes to the same values as int8)."""
    global _QDQ_REGISTERED
    if _QDQ_REGISTERED:
        return
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx.symbolic_helper import _maybe_get_const

    import graphopt.qdq_ops  # noqa: F401  (defines the ops)

    def constants(g: Any, scale: Any, zero_point: Any, storage: torch.dtype) -> tuple[Any, Any]:
        scale_value = float(_maybe_get_const(scale, "f"))
        zero_value = int(_maybe_get_const(zero_point, "i"))
        return (
            g.op("Constant", value_t=torch.tensor(scale_value, dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor(zero_value, dtype=storage)),
        )

    def quantize(g: Any, x: Any, scale: Any, zero_point: Any, qmin: Any, qmax: Any) -> Any:
        low, high = int(_maybe_get_const(qmin, "i")), int(_maybe_get_const(qmax, "i"))
        if (low, high) not in ((-128, 127), (0, 255)):
            raise GraphoptError(
                f"cannot export a quantize to [{low}, {high}] as ONNX (QuantizeLinear saturates to int8/uint8)"
            )
        return g.op("QuantizeLinear", x, *constants(g, scale, zero_point, torch.int8 if low < 0 else torch.uint8))

    def dequantize(g: Any, q: Any, scale: Any, zero_point: Any) -> Any:
        storage = torch.uint8 if q.type().scalarType() == "Byte" else torch.int8
        return g.op("DequantizeLinear", q, *constants(g, scale, zero_point, storage))

    def dequantize_per_channel(g: Any, q: Any, scales: Any, axis: Any) -> Any:
        return g.op("DequantizeLinear", q, scales, axis_i=int(_maybe_get_const(axis, "i")))

    def fake_quantize_dynamic(g: Any, x: Any, qmin: Any, qmax: Any) -> Any:
        q, scale, zero_point = g.op("DynamicQuantizeLinear", x, outputs=3)
        return g.op("DequantizeLinear", q, scale, zero_point)

    for name, symbolic in (
        ("quantize", quantize),
        ("dequantize", dequantize),
        ("dequantize_per_channel", dequantize_per_channel),
        ("fake_quantize_dynamic", fake_quantize_dynamic),
    ):
        register_custom_op_symbolic(f"graphopt::{name}", symbolic, 13)
    _QDQ_REGISTERED = True


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


def onnx2torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnx2torch")
    except PackageNotFoundError:
        return "not installed"


def run_onnxruntime(path: str | Path, inputs: Any) -> list[Any]:
    """Run an ONNX file in ONNX Runtime (CPU) on ``inputs`` (tensors or arrays); its outputs as numpy arrays."""
    import numpy as np
    import onnxruntime

    from graphopt.capture import normalize_inputs

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    arrays = [np.ascontiguousarray(t.detach().cpu().numpy()).reshape(t.shape) for t in normalize_inputs(inputs)]
    feed = {value.name: array for value, array in zip(session.get_inputs(), arrays, strict=True)}
    return list(session.run(None, feed))
