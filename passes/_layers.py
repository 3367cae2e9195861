"""Graph-editing helpers the built-in passes share: constants, weighted layers, dead nodes.

A weighted layer (Conv, Linear, BatchNorm) is spelled three ways in a graph: a ``call_module``
(``nn.Conv2d``), a torch function fed by ``get_attr`` nodes (``F.conv2d(x, self.w)``), or an aten
overload fed by ``get_attr`` nodes (``aten.conv2d.default``, what ``torch.export`` produces).
``layer_of`` hides that: ``layer.get("weight")`` reads a tensor and ``layer.set("weight", t)``
rebinds it (a module attribute, or a new constant in the function's argument slot). Setting never
mutates a tensor in place, so a weight tied to another layer keeps its value there.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from graphopt.op_kinds import op_kind

CONV_KINDS = frozenset({"conv1d", "conv2d", "conv3d"})

#: Argument positions of each role in the function/aten spellings, by (kind, op name).
_ROLE_SLOTS: dict[str, dict[str, int]] = {
    "conv": {"weight": 1, "bias": 2},
    "linear": {"weight": 1, "bias": 2},
    "batch_norm": {"weight": 1, "bias": 2, "running_mean": 3, "running_var": 4},
    "F.batch_norm": {"running_mean": 1, "running_var": 2, "weight": 3, "bias": 4},
}
_GROUPS_SLOT = {"conv1d": 6, "conv2d": 6, "conv3d": 6, "convolution": 8}


def fetch_attr(module: nn.Module, target: str) -> Any:
    """The object a ``get_attr`` target names ("layer1.conv.weight")."""
    value: Any = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def add_constant(module: fx.GraphModule, tensor: torch.Tensor, hint: str) -> str:
    """Register ``tensor`` as a frozen top-level parameter named after ``hint``; returns its name."""
    base = re.sub(r"\W", "_", hint).strip("_") or "constant"
    name, index = base, 1
    while hasattr(module, name):
        name, index = f"{base}_{index}", index + 1
    module.register_parameter(name, nn.Parameter(tensor.detach().clone(), requires_grad=False))
    return name


def insert_constant(module: fx.GraphModule, tensor: torch.Tensor, hint: str, before: fx.Node) -> fx.Node:
    """A new ``get_attr`` node for ``tensor``, placed before ``before``."""
    name = add_constant(module, tensor, hint)
    with module.graph.inserting_before(before):
        return module.graph.get_attr(name)


_FUNCTIONS = {
    "matmul": (torch.matmul, torch.ops.aten.matmul.default),
    "add": (operator.add, torch.ops.aten.add.Tensor),
    "mul": (operator.mul, torch.ops.aten.mul.Tensor),
}


def emit(graph: Any, before: fx.Node, function: str, *args: Any) -> fx.Node:
    """A new matmul/add/mul call before ``before``, in the graph's own spelling (torch or aten).

    It inherits ``before``'s source line and module path, so errors and the visualizer still
    point at the user's code.
    """
    target = _FUNCTIONS[function][1 if graph.capture_method == "export" else 0]
    with graph.module.graph.inserting_before(before):
        node = graph.module.graph.call_function(target, args)
    node.meta.update({k: v for k, v in before.meta.items() if k in ("stack_trace", "nn_module_stack")})
    return node


def call_count(module: fx.GraphModule, target: str) -> int:
    return sum(1 for n in module.graph.nodes if n.op == "call_module" and n.target == target)


@dataclass
class Layer:
    """A Conv/Linear/BatchNorm node whose tensors can be read and rebound by role name."""

    module: fx.GraphModule
    node: fx.Node
    kind: str  # conv1d/conv2d/conv3d, linear, batch_norm
    submodule: nn.Module | None  # set for the call_module spelling
    slots: dict[str, int]  # role -> argument position (function/aten spelling)

    @property
    def input(self) -> Any:
        return self.node.args[0]

    def _arg(self, role: str) -> Any:
        if role in self.node.kwargs:
            return self.node.kwargs[role]
        position = self.slots[role]
        return self.node.args[position] if position < len(self.node.args) else None

    def is_constant(self, role: str) -> bool:
        """True when the role's tensor is known at compile time (a module attribute or get_attr)."""
        if self.submodule is not None:
            return True
        arg = self._arg(role)
        return arg is None or (isinstance(arg, fx.Node) and arg.op == "get_attr")

    def get(self, role: str) -> torch.Tensor | None:
        if self.submodule is not None:
            return getattr(self.submodule, role)
        arg = self._arg(role)
        if arg is None:
            return None
        if not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
            raise ValueError(f"{role} of {self.node.name} is computed at run time")
        return fetch_attr(self.module, str(arg.target))

    def set(self, role: str, tensor: torch.Tensor) -> None:
        if self.submodule is not None:
            if role in self.submodule._buffers:
                self.submodule._buffers[role] = tensor.detach().clone()
            else:
                setattr(self.submodule, role, nn.Parameter(tensor.detach().clone(), requires_grad=False))
            return
        constant = insert_constant(self.module, tensor, f"{self.node.name}_{role}", before=self.node)
        if role in self.node.kwargs:
            self.node.update_kwarg(role, constant)
            return
        position = self.slots[role]
        args = list(self.node.args)
        defaults = {2: None}  # only an optional bias can be missing before its slot is needed
        while len(args) <= position:
            args.append(defaults.get(len(args)))
        args[position] = constant
        self.node.args = tuple(args)

    @property
    def groups(self) -> int:
        if self.submodule is not None:
            return int(getattr(self.submodule, "groups", 1))
        position = _GROUPS_SLOT.get(_op_name(self.node), 6)
        args: tuple[Any, ...] = self.node.args
        groups: Any = self.node.kwargs.get("groups", args[position] if position < len(args) else 1)
        return int(groups)


def _op_name(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return target._schema.name.split("::")[-1]
    return getattr(target, "__name__", str(target))


def layer_of(module: fx.GraphModule, node: fx.Node) -> Layer | None:
    """The node as a ``Layer`` (conv/linear/batch_norm), or None for other nodes and spellings.

    Not handled (None): transposed convolutions, ``addmm``, modules called more than once (their
    tensors cannot be rewritten for one call alone), BatchNorm without running statistics.
    """
    kind = op_kind(module, node)
    if kind not in CONV_KINDS | {"linear", "batch_norm"} or node.op not in ("call_module", "call_function"):
        return None
    if node.op == "call_module":
        submodule = module.get_submodule(str(node.target))
        if call_count(module, str(node.target)) != 1:
            return None
        if kind == "batch_norm" and getattr(submodule, "running_mean", None) is None:
            return None
        return Layer(module, node, kind, submodule, {})
    name = _op_name(node)
    if name == "addmm" or (name == "convolution" and node.args[6]):
        return None
    if kind == "batch_norm":
        slots = _ROLE_SLOTS["F.batch_norm" if node.target is torch.nn.functional.batch_norm else "batch_norm"]
    else:
        slots = _ROLE_SLOTS["linear" if kind == "linear" else "conv"]
    return Layer(module, node, kind, None, slots)


def batch_norm_eps(layer: Layer) -> float:
    if layer.submodule is not None:
        return float(layer.submodule.eps)  # type: ignore[arg-type]
    position = {"batch_norm": 7, "_native_batch_norm_legit_no_training": 6}.get(_op_name(layer.node), 7)
    args: tuple[Any, ...] = layer.node.args
    eps: Any = layer.node.kwargs.get("eps", args[position] if position < len(args) else 1e-5)
    return float(eps)


def batch_norm_training(layer: Layer) -> bool:
    """Whether the BatchNorm normalizes with batch statistics (training mode)."""
    if layer.submodule is not None:
        return bool(layer.submodule.training)
    name = _op_name(layer.node)
    if name == "_native_batch_norm_legit_no_training":
        return False
    position = 5
    if "training" in layer.node.kwargs:
        return bool(layer.node.kwargs["training"])
    return bool(layer.node.args[position]) if position < len(layer.node.args) else False


def batch_norm_output(layer: Layer) -> fx.Node | None:
    """The node carrying the normalized tensor: the BN itself, or getitem 0 of the aten tuple form."""
    if _op_name(layer.node) != "_native_batch_norm_legit_no_training":
        return layer.node
    users = list(layer.node.users)
    if len(users) == 1 and users[0].target is operator.getitem and users[0].args[1] == 0:
        return users[0]
    return None


def only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def remove_dead_nodes(module: fx.GraphModule) -> list[str]:
    """Erase nodes whose results nothing uses (side-effect-free ones only: an in-place ``x.add_(y)`` whose
    result is unused still changes ``x``); returns their names."""
    from graphopt.op_kinds import writes_in_place

    removed = []
    for node in reversed(list(module.graph.nodes)):
        if node.op in ("placeholder", "output") or node.users or node.is_impure() or writes_in_place(node):
            continue
        removed.append(node.name)
        module.graph.erase_node(node)
    removed.reverse()
    return removed


def tensor_attributes(module: nn.Module) -> list[tuple[str, nn.Module, str, torch.Tensor]]:
    """(qualified name, owner, attribute, tensor) for every parameter, buffer and tensor attribute."""
    found = []
    for prefix, owner in module.named_modules(remove_duplicate=False):
        named = list(owner._parameters.items()) + list(owner._buffers.items())
        named += [(k, v) for k, v in vars(owner).items() if isinstance(v, torch.Tensor)]
        for attribute, tensor in named:
            if tensor is not None:
                found.append((f"{prefix}.{attribute}" if prefix else attribute, owner, attribute, tensor))
    return found


def tensor_bytes(module: nn.Module) -> int:
    unique = {id(t): t for *_, t in tensor_attributes(module)}
    return sum(t.numel() * t.element_size() for t in unique.values())


def unused_attributes(module: fx.GraphModule) -> set[str]:
    """Qualified names of parameters, buffers and tensor attributes that no node reads."""
    read = {str(n.target) for n in module.graph.nodes if n.op in ("get_attr", "call_module")}

    def is_read(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in read for i in range(1, len(parts) + 1))

    return {name for name, *_ in tensor_attributes(module) if not is_read(name)}


def remove_unused_attributes(module: fx.GraphModule, *, spare: set[str] | None = None) -> list[str]:
    """Delete tensors no node reads (except ``spare``), then submodules no node reaches.

    Passes that replace weights call it with ``spare=unused_attributes(module)`` taken before they
    start, so they free exactly what they orphaned and the report charges the bytes to them.
    """
    unused = unused_attributes(module) - (spare or set())
    removed = []
    for name, owner, attribute, _ in tensor_attributes(module):
        if name not in unused:
            continue
        if attribute in owner._parameters:
            owner._parameters[attribute] = None  # registered as absent, like bias=False: repr still works
        elif attribute in owner._buffers:
            owner._buffers[attribute] = None
        elif hasattr(owner, attribute):
            delattr(owner, attribute)
        removed.append(name)
    module.delete_all_unused_submodules()
    return removed
