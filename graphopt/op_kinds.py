"""One canonical name per operation, whichever way the graph spells it.

A graph captured by ``symbolic_trace`` calls modules (``nn.Conv2d``) and torch functions
(``torch.relu``, ``operator.add``, ``x.relu()``); one captured by ``torch.export`` calls aten
overloads (``aten.conv2d.default``). Passes, FLOP counting, the visualizer and the targets all ask
``op_kind(graph_module, node)`` and get the same answer ("conv2d", "relu", "add", ...) for each.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

_MODULE_KINDS: dict[type, str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.Conv3d: "conv3d",
    nn.BatchNorm1d: "batch_norm",
    nn.BatchNorm2d: "batch_norm",
    nn.BatchNorm3d: "batch_norm",
    nn.LayerNorm: "layer_norm",
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.LeakyReLU: "leaky_relu",
    nn.Softmax: "softmax",
    nn.Dropout: "dropout",
    nn.Identity: "identity",
    nn.Flatten: "flatten",
    nn.MaxPool2d: "max_pool2d",
    nn.AvgPool2d: "avg_pool2d",
    nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d",
    nn.Embedding: "embedding",
    nn.MultiheadAttention: "multihead_attention",
}

_FUNCTION_KINDS: dict[Any, str] = {
    F.linear: "linear",
    F.conv1d: "conv1d",
    F.conv2d: "conv2d",
    F.batch_norm: "batch_norm",
    F.layer_norm: "layer_norm",
    torch.relu: "relu",
    F.relu: "relu",
    F.relu6: "relu6",
    F.gelu: "gelu",
    F.silu: "silu",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    F.hardswish: "hardswish",
    F.dropout: "dropout",
    torch.softmax: "softmax",
    F.softmax: "softmax",
    torch.matmul: "matmul",
    torch.bmm: "matmul",
    operator.matmul: "matmul",
    torch.add: "add",
    operator.add: "add",
    operator.iadd: "add",
    torch.sub: "sub",
    operator.sub: "sub",
    torch.mul: "mul",
    operator.mul: "mul",
    operator.imul: "mul",
    torch.div: "div",
    operator.truediv: "div",
    torch.cat: "cat",
    torch.flatten: "flatten",
    torch.reshape: "reshape",
    torch.transpose: "transpose",
    torch.t: "transpose",
    torch.permute: "permute",
    F.max_pool2d: "max_pool2d",
    F.avg_pool2d: "avg_pool2d",
    F.adaptive_avg_pool2d: "adaptive_avg_pool2d",
    torch.mean: "mean",
    operator.getitem: "getitem",
}

_METHOD_KINDS: dict[str, str] = {
    "relu": "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "matmul": "matmul",
    "view": "reshape",
    "reshape": "reshape",
    "flatten": "flatten",
    "transpose": "transpose",
    "t": "transpose",
    "permute": "permute",
    "contiguous": "contiguous",
    "clone": "identity",
    "mean": "mean",
    "softmax": "softmax",
    "size": "size",
    "float": "cast",
    "to": "cast",
    "type_as": "cast",
}

_ATEN_KINDS: dict[str, str] = {
    "linear": "linear",
    "addmm": "linear",
    "conv1d": "conv1d",
    "conv2d": "conv2d",
    "conv3d": "conv3d",
    "convolution": "conv2d",
    "batch_norm": "batch_norm",
    "_native_batch_norm_legit_no_training": "batch_norm",
    "layer_norm": "layer_norm",
    "relu": "relu",
    "relu_": "relu",
    "hardtanh": "relu6",
    "gelu": "gelu",
    "silu": "silu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "hardswish": "hardswish",
    "softmax": "softmax",
    "_softmax": "softmax",
    "dropout": "dropout",
    "matmul": "matmul",
    "mm": "matmul",
    "bmm": "matmul",
    "add": "add",
    "add_": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "cat": "cat",
    "flatten": "flatten",
    "view": "reshape",
    "reshape": "reshape",
    "_unsafe_view": "reshape",
    "transpose": "transpose",
    "t": "transpose",
    "permute": "permute",
    "contiguous": "contiguous",
    "clone": "identity",
    "max_pool2d": "max_pool2d",
    "avg_pool2d": "avg_pool2d",
    "adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "mean": "mean",
    "embedding": "embedding",
    "getitem": "getitem",
    "_to_copy": "cast",
    "to": "cast",
}

#: Kinds whose output is an elementwise function of their inputs (fusable epilogues).
ELEMENTWISE = frozenset(
    {
        "relu",
        "relu6",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "hardswish",
        "hardsigmoid",
        "leaky_relu",
        "add",
        "sub",
        "mul",
        "div",
    }
)


def op_kind(module: fx.GraphModule, node: fx.Node) -> str:
    """Return the canonical kind of ``node`` ("conv2d", "relu", ...), or a descriptive fallback.

    >>> # for a node calling ``self.fc`` where ``fc`` is an ``nn.Linear``: op_kind(gm, node) == "linear"
    """
    if node.op in ("placeholder", "output", "get_attr"):
        return node.op
    if node.op == "call_module":
        submodule = module.get_submodule(str(node.target))
        kind = _MODULE_KINDS.get(type(submodule))
        if kind is None:
            kind = getattr(submodule, "graphopt_kind", None) or type(submodule).__name__
        return kind
    if node.op == "call_method":
        return _METHOD_KINDS.get(str(node.target), str(node.target))
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        name = target._schema.name.split("::")[-1]
        return _ATEN_KINDS.get(name, name)
    kind = _FUNCTION_KINDS.get(target)
    if kind is not None:
        return kind
    return str(getattr(target, "graphopt_kind", None) or getattr(target, "__name__", str(target)))


def op_label(module: fx.GraphModule, node: fx.Node) -> str:
    """A precise human-readable name of what the node calls (for errors and the visualizer)."""
    if node.op == "call_module":
        return type(module.get_submodule(str(node.target))).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        target = node.target
        if isinstance(target, torch._ops.OpOverload):
            return str(target)
        qualified = getattr(target, "__module__", "") or ""
        name = getattr(target, "__name__", str(target))
        return f"{qualified}.{name}" if qualified and qualified != "_operator" else name
    return node.op


# Name fragments of ops whose result is not a function of their inputs (``empty`` returns whatever
# memory held, ``seed`` changes the generator).
_RANDOM = ("rand", "dropout", "bernoulli", "normal", "uniform", "multinomial", "poisson", "empty", "seed")
_IN_PLACE = frozenset({operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.setitem})


def is_pure(module: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` computes a function of its inputs and changes nothing else: no randomness,
    no in-place update. Folding and merging such a node cannot change what the graph computes.

    Passes add their own policy on top (fold_constants keeps graphopt's quantize ops, common
    subexpressions leave layers in training mode alone)."""
    if node.op in ("placeholder", "output") or node.is_impure():
        return False
    if node.op == "get_attr":
        return True
    if node.op == "call_module":
        names = [type(m).__name__.lower() for m in module.get_submodule(str(node.target)).modules()]
        return not any(word in name for name in names for word in _RANDOM)
    if node.target in _IN_PLACE:
        return False
    name = str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    base = name.split(".")[0]
    return not (any(word in base.lower() for word in _RANDOM) or (base.endswith("_") and not base.startswith("_")))


#: Ops whose result is a view of their first argument (writing the view writes the argument), by the
#: name a traced graph calls them; an aten overload says so in its schema instead.
_VIEWS = frozenset(
    {
        "view",
        "reshape",
        "transpose",
        "permute",
        "expand",
        "expand_as",
        "getitem",
        "select",
        "slice",
        "narrow",
        "squeeze",
        "unsqueeze",
        "t",
        "flatten",
        "unflatten",
        "as_strided",
        "detach",
        "alias",
        "split",
        "chunk",
        "unbind",
        "diagonal",
        "unfold",
        "view_as",
        "movedim",
        "swapaxes",
        "contiguous",
        "real",
        "imag",
    }
)


def _name(node: fx.Node) -> str:
    name = str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    return name.split(".")[0]


def _written_and_aliased(node: fx.Node) -> tuple[list[fx.Node], list[fx.Node]]:
    """(the arguments ``node`` writes in place, the arguments its result aliases)."""
    tensors = [arg for arg in node.args if isinstance(arg, fx.Node)]
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        written, aliased = [], []
        returns = {str(r.alias_info) for r in target._schema.returns if r.alias_info is not None}
        for argument, value in zip(target._schema.arguments, node.args, strict=False):
            info = argument.alias_info
            if info is None or not isinstance(value, fx.Node):
                continue
            if info.is_write:
                written.append(value)
            if str(info) in returns or info.is_write:
                aliased.append(value)
        return written, aliased
    if node.op not in ("call_function", "call_method") or not tensors:
        return [], []
    name = _name(node)
    if target in _IN_PLACE or (name.endswith("_") and not name.startswith("_")):
        return tensors[:1], tensors[:1]
    return [], tensors[:1] if name in _VIEWS else []


def writes_in_place(node: fx.Node) -> bool:
    """Whether ``node`` writes into one of its arguments (``add_``, ``aten.copy_``): a side effect."""
    return bool(_written_and_aliased(node)[0])


def mutated_nodes(module: fx.GraphModule) -> set[fx.Node]:
    """The nodes whose value an in-place op changes after it was computed: the written tensor and
    every view of the same storage (a ``zeros`` that ``add_`` accumulates into, ONNX Sum's import).
    Two such nodes with the same op and inputs hold different values by the time they are read, so
    merging them (or folding them to their first value) would change what the graph computes."""
    parent: dict[fx.Node, fx.Node] = {}

    def root(node: fx.Node) -> fx.Node:
        while parent.get(node, node) is not node:
            node = parent[node]
        return node

    written: list[fx.Node] = []
    for node in module.graph.nodes:
        writes, aliases = _written_and_aliased(node)
        written += writes
        for alias in aliases:
            parent[root(node)] = root(alias)
    if not written:
        return set()
    dirty = {root(node) for node in written}
    return {node for node in module.graph.nodes if root(node) in dirty}
