"""Capture a PyTorch model into graphopt's IR.

``torch.fx.symbolic_trace`` comes first: it keeps the user's modules as nodes (``nn.Conv2d``), which
is what module-level passes and the visualizer want. Where it cannot trace (control flow on input
shapes, unsupported Python), ``torch.export`` is tried next and the fallback is recorded in
``graph.notes``. When both fail, one ``CaptureError`` names the construct and the user's line.
The user's model is never touched: capture works on a deep copy.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from graphopt.errors import CaptureError, GraphoptError, InputError, first_line
from graphopt.ir import Graph
from graphopt.metadata import annotate, user_source
from graphopt.output_types import describe_non_tensor_output

_TORCH_DIR = os.path.dirname(torch.__file__)
_GRAPHOPT_DIR = os.path.dirname(os.path.abspath(__file__))


class _Tracer(fx.Tracer):
    """symbolic_trace with stack traces recorded, so every node knows its source line.

    A numpy scalar, or a real one-element integer tensor in a slice, is recorded as the Python number
    it holds: what a converter computes from a constant operand (``graphopt.onnx.constants``), such as
    ``x[slice(np.int64(1), tensor(3))]``, which fx would otherwise refuse or keep as a tensor bound."""

    record_stack_traces = True

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, np.generic):
            return super().create_arg(a.item())
        if isinstance(a, slice):
            return slice(*(self.create_arg(_as_number(part)) for part in (a.start, a.stop, a.step)))
        return super().create_arg(a)


def _as_number(value: Any) -> Any:
    """A real one-element integer or bool tensor (not a traced one) as its Python number."""
    real = isinstance(value, torch.Tensor) and not isinstance(value, fx.Proxy) and value.numel() == 1
    if real and not value.is_floating_point() and not value.is_complex():
        return value.item()
    return value.item() if isinstance(value, np.generic) else value


def normalize_inputs(example_inputs: Any, *, allow_empty: bool = False) -> tuple[torch.Tensor, ...]:
    """Accept one tensor, a tuple/list of tensors, or numpy arrays; return a tuple of tensors.

    A dimension of 0 is refused (torch.export specializes it) unless ``allow_empty``: an imported
    ONNX model is traced by fx, which keeps empty tensors as they are."""
    if not isinstance(example_inputs, (tuple, list)):
        example_inputs = (example_inputs,)
    result = []
    for index, value in enumerate(example_inputs):
        if isinstance(value, torch.Tensor):
            result.append(value)
        elif hasattr(value, "__array__"):
            result.append(torch.as_tensor(value))
        else:
            raise InputError(f"example input {index} is a {type(value).__name__}, expected a tensor")
        if 0 in result[-1].shape and not allow_empty:
            shape = "x".join(str(d) for d in result[-1].shape)
            raise InputError(f"example input {index} has shape {shape}: every dimension must be at least 1")
    return tuple(result)


def check_program_inputs(program: torch.export.ExportedProgram, inputs: tuple[torch.Tensor, ...]) -> None:
    """The inputs fit the shapes ``program`` was exported with (its static dimensions must match)."""
    user_inputs = program.graph_signature.user_inputs
    recorded = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    if len(inputs) != len(user_inputs):
        raise InputError(f"the program takes {len(user_inputs)} input(s), {len(inputs)} were given")
    for index, (name, given) in enumerate(zip(user_inputs, inputs, strict=True)):
        value = recorded.get(name)
        if value is None or not hasattr(value, "shape"):
            continue
        exported = tuple(value.shape)
        static = ["?" if not isinstance(d, int) else str(d) for d in exported]
        fits = len(exported) == given.dim() and all(
            not isinstance(d, int) or d == g for d, g in zip(exported, given.shape, strict=False)
        )
        if not fits:
            raise InputError(
                f"input {index} ('{name}') has shape {'x'.join(str(d) for d in given.shape)}, but the program was "
                f"exported for {'x'.join(static)} ('?' is dynamic): give that shape, or export with dynamic_shapes"
            )


def _user_frame(error: BaseException) -> str | None:
    """The deepest traceback frame outside torch and graphopt: where the user's code failed."""
    frames: list[traceback.FrameSummary] = list(traceback.extract_tb(error.__traceback__))
    cause = error.__cause__ or error.__context__
    if cause is not None and cause.__traceback__ is not None:
        frames = frames + traceback.extract_tb(cause.__traceback__)
    mine = [f for f in frames if not f.filename.startswith((_TORCH_DIR, _GRAPHOPT_DIR)) and "<" not in f.filename]
    if not mine:
        return None
    frame = mine[-1]
    return f"{frame.filename}:{frame.lineno}" + (f" `{frame.line.strip()}`" if frame.line else "")


def _symbolic_trace(model: nn.Module) -> fx.GraphModule:
    graph = _Tracer().trace(model)
    return fx.GraphModule(model, graph, type(model).__name__)


@contextlib.contextmanager
def quiet_torch() -> Iterator[io.StringIO]:
    """Hold back what torch.export prints on failure (the whole partial graph, log warnings).

    The caller raises one ``CaptureError`` instead; the held-back text is attached to it as a
    note, so ``--debug`` tracebacks still show it.
    """
    held = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(held):
            yield held
    finally:
        logging.disable(previous)


def dynamic_shapes_for(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    *,
    dynamic_batch: bool = False,
    dynamic_seq_len: int | None = None,
) -> tuple[tuple[torch.Tensor, ...], Any]:
    """The inputs to trace ``module`` at and ``torch.export``'s ``dynamic_shapes`` for them (built as a
    ``ShapesCollection``, keyed by tensor, so they fit any ``forward`` signature, ``*inputs`` included).

    ``dynamic_batch``: dimension 0 of every input is one size "batch" (at least 1). ``dynamic_seq_len``:
    dimension 1 of every input of two or more dimensions is one size "seq", from 1 to that bound (a
    transformer's token ids, attention mask or embeddings). torch.export specializes a size-1 dimension to
    the constant 1, so such a dimension is traced at 2 (repeated: the values are only traced).
    """
    if not dynamic_batch and dynamic_seq_len is None:
        return inputs, None
    batch = torch.export.Dim("batch", min=1) if dynamic_batch else None
    seq = torch.export.Dim("seq", min=1, max=dynamic_seq_len) if dynamic_seq_len is not None else None
    traced, shapes = [], torch.export.ShapesCollection()
    for t in inputs:
        dims: dict[int, Any] = {}
        if batch is not None and t.dim() > 0:
            dims[0] = batch
        if seq is not None and t.dim() > 1:
            dims[1] = seq
        repeats = [2 if d in dims and t.shape[d] == 1 else 1 for d in range(t.dim())]
        traced.append(t.repeat(*repeats) if any(r > 1 for r in repeats) else t)
        if dims:
            shapes[traced[-1]] = dims
    return tuple(traced), shapes.dynamic_shapes(module, tuple(traced))


def _export(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], dynamic_batch: bool = False, dynamic_seq_len: int | None = None
) -> fx.GraphModule:
    traced, dynamic_shapes = dynamic_shapes_for(
        model, inputs, dynamic_batch=dynamic_batch, dynamic_seq_len=dynamic_seq_len
    )
    with quiet_torch() as held:
        try:
            program = torch.export.export(model, traced, dynamic_shapes=dynamic_shapes, strict=False)
        except Exception as error:
            if held.getvalue().strip():
                error.add_note("torch.export printed:\n" + held.getvalue().strip())
            raise
    module = module_from_exported(program)
    module.training = model.training  # export's module always says training; passes that need eval read this
    return module


def module_from_exported(program: torch.export.ExportedProgram) -> fx.GraphModule:
    """An executable GraphModule from an ExportedProgram, without export's runtime guard call."""
    module = program.module()
    for node in list(module.graph.nodes):
        if node.op == "call_module" and str(node.target) == "_guards_fn":
            module.graph.erase_node(node)
    if hasattr(module, "_guards_fn"):
        delattr(module, "_guards_fn")
    module.graph.eliminate_dead_code()
    module.recompile()
    return module  # type: ignore[return-value]


#: aten ops whose training flag (argument index) decides train vs eval semantics.
_TRAINING_FLAG_ARGS = {"batch_norm": 5, "dropout": 2, "feature_dropout": 2}
_TRAINING_ONLY_OPS = ("_native_batch_norm_legit_functional", "_native_batch_norm_legit.default")


def _has_training_ops(module: fx.GraphModule) -> bool:
    """Whether an exported graph computes training-mode BatchNorm or Dropout.

    ``ExportedProgram.module()`` always comes back with ``training=True`` (and refuses ``.eval()``),
    although the mode was fixed when the program was exported; the ops themselves tell which.
    """
    for node in module.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        name = node.target._schema.name.split("::")[-1]
        if str(node.target).endswith(_TRAINING_ONLY_OPS):
            return True
        index = _TRAINING_FLAG_ARGS.get(name)
        if index is not None and len(node.args) > index and node.args[index] is True:
            return True
    return False


def _mark_eval(module: nn.Module) -> None:
    for submodule in module.modules():
        submodule.training = False  # set directly: the unlifted module's eval() raises


def capture(
    model: Any,
    example_inputs: Any = None,
    *,
    method: str = "auto",
    name: str | None = None,
    dynamic_batch: bool = False,
    dynamic_seq_len: int | None = None,
) -> Graph:
    """Trace ``model`` into a ``Graph`` whose nodes carry shape, dtype, parameter bytes and FLOPs.

    ``dynamic_batch`` / ``dynamic_seq_len`` (as the build options of those names) keep those sizes
    symbolic where torch.export captures the model (symbolic_trace keeps every size symbolic), so the
    graph computes its reshapes from the input's sizes rather than the example's.

    ``method`` is "auto" (symbolic_trace, then torch.export), "symbolic_trace" or "export".
    ``model`` may also be a ``torch.export.ExportedProgram``, or an ONNX model (a ``.onnx`` path or
    an ``onnx.ModelProto``), converted by onnx2torch and then captured like a PyTorch model; its
    example inputs default to random ones of the shapes and dtypes the file declares.

    >>> graph = graphopt.capture(MnistMLP().eval(), torch.randn(1, 784))
    >>> graph(torch.randn(1, 784)).shape
    torch.Size([1, 10])
    >>> graph = graphopt.capture("model.onnx")
    """
    from graphopt.onnx.io import is_onnx_spec

    if is_onnx_spec(model):
        return _capture_onnx(model, example_inputs, method=method, name=name)
    if example_inputs is None:
        raise InputError("capture needs example inputs (a tensor or a tuple of tensors) for a PyTorch model")
    return _capture_module(
        model,
        normalize_inputs(example_inputs),
        method=method,
        name=name,
        dynamic_batch=dynamic_batch,
        dynamic_seq_len=dynamic_seq_len,
    )


def _capture_module(
    model: Any,
    inputs: tuple[torch.Tensor, ...],
    *,
    method: str,
    name: str | None,
    dynamic_batch: bool = False,
    dynamic_seq_len: int | None = None,
) -> Graph:
    """``capture`` of a PyTorch module or ExportedProgram on normalized example inputs."""
    if method not in ("auto", "symbolic_trace", "export"):
        raise InputError(f"unknown capture method '{method}' (choose auto, symbolic_trace or export)")
    if isinstance(model, torch.export.ExportedProgram):
        check_program_inputs(model, inputs)
        module = module_from_exported(model)
        if not _has_training_ops(module):
            _mark_eval(module)
        graph = Graph(module, inputs, name=name or "exported_program", capture_method="export")
        _annotate_or_explain(graph)
        return graph
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module to capture, got {type(model).__name__}")
    try:
        model_copy = copy.deepcopy(model)
    except Exception as error:
        raise CaptureError(f"cannot copy the model to capture it safely: {first_line(error)}") from error
    model_name = name or type(model).__name__
    notes: list[str] = []
    trace_error: Exception | None = None
    if method in ("auto", "symbolic_trace"):
        try:
            graph = Graph(_symbolic_trace(model_copy), inputs, name=model_name, capture_method="symbolic_trace")
        except Exception as error:
            trace_error = error
            if method == "symbolic_trace":
                raise CaptureError(f"symbolic_trace failed: {first_line(error)}", source=_user_frame(error)) from error
            notes.append(f"symbolic_trace failed ({first_line(error)}); captured with torch.export instead")
        else:
            _annotate_or_explain(graph)
            return graph
    try:
        module = _export(copy.deepcopy(model), inputs, dynamic_batch, dynamic_seq_len)
    except Exception as error:
        outputs = _raise_if_inputs_do_not_fit(model_copy, inputs)
        not_tensor = describe_non_tensor_output(model_name, outputs)
        if not_tensor is not None:
            raise CaptureError(not_tensor) from error
        source = _user_frame(error) or (_user_frame(trace_error) if trace_error else None)
        message = f"cannot capture {model_name}: torch.export failed: {first_line(error)}"
        if trace_error is not None:
            message = (
                f"cannot capture {model_name}: symbolic_trace failed ({first_line(trace_error)}) "
                f"and torch.export failed ({first_line(error)})"
            )
        raise CaptureError(message, source=source) from error
    graph = Graph(module, inputs, name=model_name, capture_method="export", notes=notes)
    _annotate_or_explain(graph)
    return graph


def _capture_onnx(model: Any, example_inputs: Any, *, method: str, name: str | None) -> Graph:
    """Convert an ONNX model to a torch module with onnx2torch, then capture that module."""
    from pathlib import Path

    from graphopt.onnx.constants import shape_operand_inputs
    from graphopt.onnx.io import check_inputs, default_opset, import_onnx, inputs_like_onnx

    module, proto = import_onnx(model)
    if example_inputs is None:
        inputs = inputs_like_onnx(proto)
    else:
        inputs = normalize_inputs(example_inputs, allow_empty=True)
        check_inputs(proto, inputs)
    default_name = Path(model).stem if isinstance(model, (str, Path)) else (proto.graph.name or "onnx_model")
    graph = capture_converted(module, inputs, method=method, name=name or default_name)
    graph.notes.insert(0, f"imported from ONNX (opset {default_opset(proto)}) with onnx2torch")
    shape_inputs = shape_operand_inputs(proto)
    if graph.capture_method == "onnx2torch" and shape_inputs:
        listed = ", ".join(f"'{name}' ({use})" for name, use in shape_inputs)
        graph.notes.append(f"{SHAPE_INPUTS_NOTE} {listed}: {SHAPE_INPUTS_HINT}")
    return graph


#: How a graph's notes name the ONNX inputs that set shapes (``targets.lowering`` repeats the note).
SHAPE_INPUTS_NOTE = "ONNX input(s) read as shape operands, which only PyTorch can run from a tensor:"
SHAPE_INPUTS_HINT = (
    "a compiled target needs them constant; make them initializers (onnx.numpy_helper.from_array), "
    "or build with fallback='torch'"
)


def capture_converted(module: fx.GraphModule, inputs: tuple[torch.Tensor, ...], *, method: str, name: str) -> Graph:
    """Capture onnx2torch's GraphModule; where neither tracer can (shapes computed from tensor values,
    as ONNX Reshape and Unsqueeze read them), its own fx graph of converter modules is the IR."""
    try:
        graph = _capture_module(module, inputs, method=method, name=name)
    except CaptureError as error:
        reason = str(error)
    else:
        if _same_outputs(graph, module, inputs):
            return graph
        # symbolic_trace runs a converter's Python on proxies: a branch on a tensor's dtype or value
        # silently takes one path for every input, so a trace that changes the numbers is refused
        reason = "the traced graph's outputs differ from the converted model's on the example inputs"
    graph = Graph(module, inputs, name=name, capture_method="onnx2torch")
    graph.notes.append(f"kept onnx2torch's graph: {reason}")
    _annotate_or_explain(graph)
    return graph


def _same_outputs(graph: Graph, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> bool:
    """Whether ``graph`` and ``module`` give the same outputs (exactly, NaN equal to NaN) on ``inputs``."""

    def flat(value: Any) -> list[Any]:
        if isinstance(value, (list, tuple)):
            return [item for element in value for item in flat(element)]
        return [value]

    try:
        with torch.no_grad():
            mine, theirs = flat(graph(*inputs)), flat(module(*inputs))
    except Exception:
        return False
    if len(mine) != len(theirs):
        return False
    for a, b in zip(mine, theirs, strict=True):
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
            if a != b:
                return False
        elif a.shape != b.shape or a.dtype != b.dtype:
            return False
        elif a.is_floating_point() or a.is_complex():
            if not torch.equal(torch.nan_to_num(a.double(), nan=0.5), torch.nan_to_num(b.double(), nan=0.5)):
                return False
        elif not torch.equal(a, b):
            return False
    return True


def _describe_inputs(inputs: tuple[torch.Tensor, ...]) -> str:
    return ", ".join(f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}" for t in inputs)


def _raise_if_inputs_do_not_fit(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    """After export failed: if the model fails in plain eager mode too, the inputs are the problem.
    Returns the model's eager outputs otherwise."""
    try:
        with torch.no_grad():
            return model(*inputs)
    except Exception as error:
        raise InputError(
            f"the model fails on example inputs of shape {_describe_inputs(inputs)}: {first_line(error)}",
            source=_user_frame(error),
        ) from error


def _annotate_or_explain(graph: Graph) -> None:
    """Annotate the graph; a failure here means the example inputs do not fit the model."""
    try:
        annotate(graph.module, graph.example_inputs)
    except GraphoptError:
        raise
    except Exception as error:
        failing = getattr(error, "graphopt_node", None)
        raise InputError(
            f"the model fails on example inputs of shape {_describe_inputs(graph.example_inputs)}: {first_line(error)}",
            node=failing.name if failing is not None else None,
            source=(user_source(failing) if failing is not None else None) or _user_frame(error),
        ) from error
