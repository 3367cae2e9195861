"""A graph as plain JSON-able data: what the HTML explorer, the DOT writer and pipeline diffs read.

Every node becomes a dict of the facts ``metadata.annotate`` already computed (kind, shapes, dtypes,
FLOPs, source line, module path) plus what the IR keeps elsewhere: parameter shapes and bytes, the
module's hyper-parameters, the fusion group and any quantization parameters a pass stored in
``node.meta``. Nodes are identified by their position; edges are ``[producer, consumer]`` pairs.

>>> data = graph_to_json(graphopt.capture(model.eval(), torch.randn(1, 784)))
>>> [node["kind"] for node in data["nodes"]][:3]
['placeholder', 'linear', 'relu']
"""

from __future__ import annotations

import dataclasses
import inspect
import linecache
import math
import re
from typing import Any

import torch
from torch import fx

from graphopt.ir import FUSION_GROUP, FUSION_PATTERN, Graph
from graphopt.metadata import info
from graphopt.op_kinds import ELEMENTWISE, op_label

#: Colour of each op category, shared by the HTML explorer and the DOT/SVG export.
PALETTE: dict[str, str] = {
    "io": "#64748b",
    "conv": "#3b82f6",
    "linear": "#8b5cf6",
    "norm": "#14b8a6",
    "activation": "#f59e0b",
    "arithmetic": "#ec4899",
    "pool": "#22c55e",
    "shape": "#94a3b8",
    "constant": "#a8a29e",
    "quantize": "#dc2626",
    "fused": "#6366f1",
    "other": "#78716c",
}

_CATEGORY_OF_KIND = {
    "placeholder": "io",
    "output": "io",
    "get_attr": "constant",
    "linear": "linear",
    "matmul": "linear",
    "multihead_attention": "linear",
    "embedding": "linear",
    "batch_norm": "norm",
    "layer_norm": "norm",
    "group_norm": "norm",
    "softmax": "activation",
    "max_pool2d": "pool",
    "avg_pool2d": "pool",
    "adaptive_avg_pool2d": "pool",
    "mean": "pool",
    **{kind: "shape" for kind in ("reshape", "flatten", "transpose", "permute", "contiguous", "cat", "getitem")},
    **{kind: "shape" for kind in ("size", "cast", "identity", "dropout")},
    **{kind: "arithmetic" for kind in ("add", "sub", "mul", "div")},
}

#: node.meta keys whose values are shown as quantization parameters (read generically).
_QUANT_KEY = re.compile(r"qparam|quant|scale|zero_point", re.IGNORECASE)
_QUANTIZED_DTYPES = {"int8", "uint8", "qint8", "quint8", "qint32", "int4", "uint4"}


def kind_category(kind: str) -> str:
    """The colour category of an op kind ("conv2d" -> "conv", "relu" -> "activation")."""
    if kind in _CATEGORY_OF_KIND:
        return _CATEGORY_OF_KIND[kind]
    lowered = kind.lower()
    if "quant" in lowered:
        return "quantize"
    if "fused" in lowered or "+" in kind:
        return "fused"
    if lowered.startswith("conv"):
        return "conv"
    if kind in ELEMENTWISE:
        return "activation"
    return "other"


def graph_to_json(graph: Graph) -> dict[str, Any]:
    """Describe ``graph`` as a JSON-able dict: ``nodes``, ``edges``, ``modules`` and graph stats."""
    gm = graph.module
    nodes = list(gm.graph.nodes)
    index = {node: position for position, node in enumerate(nodes)}
    modules: dict[str, str] = {}
    described = []
    for position, node in enumerate(nodes):
        described.append(_describe(gm, node, position))
        _collect_module_types(gm, node, modules)
    edges = [[index[source], index[node]] for node in nodes for source in node.all_input_nodes]
    return {
        "name": graph.name,
        "capture_method": graph.capture_method,
        "stats": graph.stats().to_dict(),
        "notes": list(graph.notes),
        "nodes": described,
        "edges": edges,
        "modules": modules,
        "palette": PALETTE,
    }


def _describe(gm: fx.GraphModule, node: fx.Node, position: int) -> dict[str, Any]:
    facts = info(node)
    fusion_group = node.meta.get(FUSION_GROUP)
    quant = {key: jsonable(value) for key, value in node.meta.items() if _QUANT_KEY.search(key)}
    if "quant" in facts.kind and node.op == "call_function":
        quant.update(_quant_arguments(gm, node))
    reads_dequantized = any(info(source).kind.startswith("dequantize") for source in node.all_input_nodes)
    return {
        "id": position,
        "name": node.name,
        "op": node.op,
        "kind": facts.kind,
        "category": kind_category(facts.kind),
        "label": op_label(gm, node),
        "target": _target_text(node),
        "module": facts.module_path,
        "scope": _scope(node, facts.module_path),
        "shapes": [list(shape) for shape in facts.shapes],
        "dtypes": list(facts.dtypes),
        "params": _params(gm, node),
        "param_bytes": facts.param_bytes,
        "flops": facts.flops,
        "source": facts.source,
        "code": _source_code(facts.source),
        "attrs": _attributes(gm, node),
        "fusion_group": None if fusion_group is None else str(fusion_group),
        "fusion_pattern": node.meta.get(FUSION_PATTERN),
        # graphopt.fuse_models: the ensemble member a node came from, or the members a wide node runs
        "member": node.meta.get("ensemble_member"),
        "wide": node.meta.get("wide_members"),
        "quant": quant or None,
        # In QDQ form an op that reads dequantized values is an int8 op (as ONNX QDQ reads it).
        "quantized": bool(quant)
        or reads_dequantized
        or "quant" in facts.kind
        or any(d in _QUANTIZED_DTYPES for d in facts.dtypes),
    }


def _quant_arguments(gm: fx.GraphModule, node: fx.Node) -> dict[str, Any]:
    """A quantize/dequantize call's parameters by name (scale, zero_point, ...), the data input left out."""
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        names = [argument.name for argument in target._schema.arguments]
    else:
        try:
            names = list(inspect.signature(target).parameters)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return {}
    values = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
    found: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, fx.Node):
            if value.op != "get_attr":
                continue  # the tensor being (de)quantized
            value = _fetch_attr(gm, str(value.target))
        found[name] = jsonable(value)
    return found


def _scope(node: fx.Node, module_path: str) -> str:
    """The module that contains the node: a call_module node's module sits inside its parent."""
    if node.op == "call_module":
        return str(node.target).rpartition(".")[0]
    return module_path


def _target_text(node: fx.Node) -> str:
    if node.op in ("call_module", "get_attr", "call_method", "placeholder"):
        return str(node.target)
    if node.op == "output":
        return "output"
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)


def _tensor_entry(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(tensor.shape),
        "dtype": str(tensor.dtype).replace("torch.", ""),
        "bytes": tensor.numel() * tensor.element_size(),
    }


def _params(gm: fx.GraphModule, node: fx.Node) -> list[dict[str, Any]]:
    """Weights the node reads: its module's parameters and buffers, and constants it takes as input."""
    entries = []
    if node.op == "call_module":
        submodule = gm.get_submodule(str(node.target))
        for name, tensor in [*submodule.named_parameters(), *submodule.named_buffers()]:
            entries.append(_tensor_entry(name, tensor))
    for source in node.all_input_nodes:
        if source.op == "get_attr":
            value = _fetch_attr(gm, str(source.target))
            if isinstance(value, torch.Tensor):
                entries.append(_tensor_entry(str(source.target), value))
    if node.op == "get_attr":
        value = _fetch_attr(gm, str(node.target))
        if isinstance(value, torch.Tensor):
            entries.append(_tensor_entry(str(node.target), value))
    return entries


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part, None)
    return value


def _attributes(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """Hyper-parameters in one line: a module's ``extra_repr`` or a call's non-tensor arguments."""
    if node.op == "call_module":
        submodule = gm.get_submodule(str(node.target))
        return f"{type(submodule).__name__}({submodule.extra_repr()})"
    if node.op not in ("call_function", "call_method"):
        return None
    parts = [_render(arg) for arg in node.args]
    parts += [f"{key}={_render(value)}" for key, value in node.kwargs.items()]
    return ", ".join(parts) or None


def _render(value: Any) -> str:
    if isinstance(value, fx.Node):
        return value.name
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_render(item) for item in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _source_code(source: str | None) -> str | None:
    """The text of the user's source line ("file:line"), if the file is readable."""
    if not source:
        return None
    path, _, line = source.rpartition(":")
    if not line.isdigit():
        return None
    code = linecache.getline(path, int(line)).strip()
    return code or None


def _collect_module_types(gm: fx.GraphModule, node: fx.Node, modules: dict[str, str]) -> None:
    """Record ``path -> class name`` of every module the node sits in, for collapsed-box labels."""
    for path, module_type in (node.meta.get("nn_module_stack") or {}).values():
        path = re.sub(r"^L\['self'\]\.?", "", str(path))
        if path and path not in modules:
            name = getattr(module_type, "__name__", None) or str(module_type).rsplit(".", 1)[-1]
            modules[path] = name
    if node.op == "call_module" and str(node.target) not in modules:
        modules[str(node.target)] = type(gm.get_submodule(str(node.target))).__name__


def jsonable(value: Any) -> Any:
    """Plain JSON data from whatever a pass stored: tensors become lists (or their shape if big)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, torch.Tensor):
        if value.numel() <= 16:
            return jsonable(value.detach().cpu().flatten().tolist() if value.ndim else value.item())
        return f"tensor{list(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return jsonable(value.item())
    return str(value)


def diff_graphs(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[str]]:
    """What a pass did, by node name: removed, added, changed (op, inputs, shapes, weights),
    fused (newly in a fusion group) and folded (new constants).

    >>> diff_graphs(graph_to_json(g0), graph_to_json(g1))["removed"]
    ['dropout']
    """
    old = {node["name"]: node for node in before["nodes"]}
    new = {node["name"]: node for node in after["nodes"]}
    old_inputs, new_inputs = _input_names(before), _input_names(after)
    fused = [
        name
        for name, node in new.items()
        if node["fusion_group"] and (name not in old or old[name]["fusion_group"] != node["fusion_group"])
    ]
    added = [name for name in new if name not in old]
    return {
        "removed": [name for name in old if name not in new],
        "added": [name for name in added if new[name]["op"] != "get_attr"],
        "folded": [name for name in added if new[name]["op"] == "get_attr"],
        "changed": [
            name
            for name, node in new.items()
            if name in old
            and name not in fused
            and _signature(node, new_inputs[name]) != _signature(old[name], old_inputs[name])
        ],
        "fused": fused,
    }


def _input_names(data: dict[str, Any]) -> dict[str, list[str]]:
    names = [node["name"] for node in data["nodes"]]
    inputs: dict[str, list[str]] = {name: [] for name in names}
    for source, target in data["edges"]:
        inputs[names[target]].append(names[source])
    return inputs


def _signature(node: dict[str, Any], inputs: list[str]) -> tuple[Any, ...]:
    """What makes a node itself different; a node whose producer was merely renamed is not."""
    params = [(p["name"], p["shape"], p["dtype"]) for p in node["params"]]
    attrs = node["attrs"] or ""
    for position, name in enumerate(inputs):
        attrs = re.sub(rf"\b{re.escape(name)}\b", f"%{position}", attrs)
    return (node["kind"], node["label"], node["target"], node["shapes"], node["dtypes"], attrs, params, node["quant"])
