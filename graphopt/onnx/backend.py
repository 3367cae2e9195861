"""graphopt as an ONNX backend (``onnx.backend.base.Backend``) on a compiled target, the CPU by default.

ONNX Runtime takes every input at run time, including the ones a node reads as a shape: Reshape's
shape, Slice's starts, Squeeze's axes, TopK's k, a window's size. A compiled target builds static
shapes from numbers, so this backend, like ONNX Runtime allocating per run, reads those inputs'
values when ``run`` is called: it makes them initializers of a copy of the model, compiles that copy
(``graphopt.compile``), and caches the artifact under those values and every other input's shape and
dtype. A run with new shape values compiles again; nothing is fixed at ``prepare``, and the other
inputs stay inputs of the artifact.

>>> rep = GraphoptBackend.prepare(model)      # an onnx.ModelProto
>>> outputs = rep.run([x, np.array([1, 3])])  # compiled for starts=[1, 3]; cached for the next such run
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx.backend.base import Backend, BackendRep

from graphopt.onnx.constants import MAX_BOUND, SHAPE_OPERANDS
from graphopt.onnx.control_flow import outer_reads

#: Nodes whose outputs depend on their input's shape only, not on its values.
_SHAPE_ONLY = ("Shape", "Size")


def shape_setting_inputs(model: Any) -> list[str]:
    """The graph inputs whose values reach a shape operand (``SHAPE_OPERANDS``: Slice starts, Reshape
    shape, Range limit, ...) through the graph's data flow, not through ``Shape``/``Size``, in input
    order: the inputs a statically shaped build needs as numbers. Where an input feeds a shape through
    an op's function body (an ``_expanded`` model: a window's size through Cast and Range) it is one too."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    sources: dict[str, set[str]] = {name: {name} for name in inputs}  # value -> graph inputs it is computed from
    reached: set[str] = set()
    for node in model.graph.node:
        own = node.domain in ("", "ai.onnx")
        shape_positions = SHAPE_OPERANDS.get(node.op_type, {}) if own else {}
        computed: set[str] = set()
        for position, name in enumerate(node.input):
            if not name:
                continue
            if position in shape_positions:
                reached |= sources.get(name, set())
            if not (own and node.op_type in _SHAPE_ONLY):
                computed |= sources.get(name, set())
        for name in outer_reads(node):  # what an If's branches or a Loop's body read from this scope
            computed |= sources.get(name, set())
        for name in node.output:
            sources[name] = computed
    return [name for name in inputs if name in reached]


def bind_inputs(model: Any, values: dict[str, np.ndarray]) -> Any:
    """A copy of ``model`` with the graph inputs named in ``values`` turned into initializers holding them."""
    import onnx
    from onnx import numpy_helper

    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    kept = [value for value in bound.graph.input if value.name not in values]
    del bound.graph.input[:]
    bound.graph.input.extend(kept)
    bound.graph.initializer.extend(numpy_helper.from_array(np.asarray(array), name) for name, array in values.items())
    return bound


def _as_numpy(value: Any) -> np.ndarray:
    """A torch tensor or array as numpy; torch's bfloat16 (which numpy lacks) as ml_dtypes' bfloat16."""
    if not hasattr(value, "detach"):
        return np.asarray(value)
    import torch

    tensor = value.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _as_tensor(value: Any) -> Any:
    """A torch tensor or array as torch: an ml_dtypes array (bfloat16, float8, int4, ...) as graphopt's import
    reads it (``graphopt.onnx.tensors``: bfloat16 as torch's, a carried type in its carrier)."""
    import torch

    from graphopt.onnx.tensors import array_to_torch

    return value if isinstance(value, torch.Tensor) else array_to_torch(np.asarray(value))


class GraphoptRep(BackendRep):
    """A prepared ONNX model: compiled per distinct value of its shape-setting inputs, at ``run``."""

    def __init__(self, model: Any, target: str = "cpu", **compile_options: Any) -> None:
        self.model = model
        self.target = target
        self.compile_options = compile_options
        initializers = {tensor.name for tensor in model.graph.initializer}
        self.input_names = [value.name for value in model.graph.input if value.name not in initializers]
        self.shape_inputs = set(shape_setting_inputs(model))
        self.compiled: dict[Any, Any] = {}  # cache key -> compiled model (``graphopt.compile``'s result)

    def _key(self, inputs: list[Any]) -> Any:
        key: list[tuple[Any, ...]] = []
        for name, value in zip(self.input_names, inputs, strict=True):
            shape, dtype = tuple(value.shape), str(value.dtype)
            if name in self.shape_inputs:
                key.append((name, shape, dtype, _as_numpy(value).tobytes()))
            else:
                key.append((name, shape, dtype))
        return tuple(key)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """The model's outputs on ``inputs`` (numpy arrays or torch tensors, in graph-input order)."""
        import graphopt
        from graphopt.errors import InputError

        given = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(given) != len(self.input_names):
            raise InputError(f"the ONNX model takes {len(self.input_names)} input(s), got {len(given)}")
        values = {
            name: _as_numpy(value)
            for name, value in zip(self.input_names, given, strict=True)
            if name in self.shape_inputs and _as_numpy(value).size <= MAX_BOUND
        }
        rest = [_as_tensor(value) for name, value in zip(self.input_names, given, strict=True) if name not in values]
        key = self._key(given)
        if key not in self.compiled:
            model = bind_inputs(self.model, values) if values else self.model
            self.compiled[key] = graphopt.compile(model, tuple(rest), target=self.target, **self.compile_options)
        outputs = self.compiled[key](*rest)
        return tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)


class GraphoptBackend(Backend):
    """``onnx.backend.base.Backend`` over graphopt's compiled targets (``device`` "CPU": the CPU target)."""

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> GraphoptRep:
        return GraphoptRep(model, **kwargs)

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"
