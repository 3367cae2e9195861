"""What the compression functions share: the graph they work on, its weight tensors, per-layer options.

A *layer* here is one weight tensor of the optimized graph (floating point, at least 2-D: a conv's
``conv1.weight``, a pre-transposed linear's ``fc1_weight_t``); biases and BatchNorm statistics are
left alone (BatchNorm is folded into the convs by O2 before anything is compressed, so the shared
values are the ones the compiled model multiplies by). Names may be given as globs (``"fc*"``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from graphopt.errors import InputError
from graphopt.ir import Graph

#: Every graph a compression function returns carries a note starting so; ``graphopt.compile``
#: writes such a graph's weights as a compressed weights file.
COMPRESSION_NOTE = "compression:"

#: ``graph.module.meta[SCALED_CODEBOOKS]``: ``{weight name: codec.ScaledCodebook}`` of the layers
#: ``share_weights(channel_scale=True)`` shared; fine-tuning trains their centroids, the artifact
#: stores them (a hint only: the codec checks it rebuilds the weights bit for bit).
SCALED_CODEBOOKS = "graphopt.scaled_codebooks"

#: ``graph.module.meta[HALF_TENSORS]``: names of the tensors ``share_weights(half_biases=True)``
#: rounded to float16 values (the artifact stores them in 2 bytes; fine-tuning keeps them so).
HALF_TENSORS = "graphopt.half_tensors"


def small_tensors(graph: Graph) -> dict[str, torch.Tensor]:
    """The graph's floating-point tensors that are not weight layers (biases: fewer than 2 dims)."""
    tensors: dict[str, torch.Tensor] = dict(graph.module.named_parameters())
    tensors.update(graph.module.named_buffers())
    return {name: t for name, t in tensors.items() if t.is_floating_point() and t.dim() < 2}


T = TypeVar("T")


@dataclass(frozen=True)
class Layer:
    """One weight tensor of the graph: its name, the tensor itself, and its output-channel axis."""

    name: str
    tensor: torch.Tensor
    channel_axis: int


def prepare_graph(model_or_graph: Any, example_inputs: Any, passes: Any) -> Graph:
    """A new graph to compress: ``model_or_graph`` captured (or copied) and optimized with ``passes``.

    The user's model or graph is never modified: ``capture`` and ``Graph.copy`` deep-copy it.
    """
    from graphopt.capture import capture
    from graphopt.pass_manager import optimize

    if isinstance(model_or_graph, Graph):
        graph = model_or_graph.copy()
    else:
        if example_inputs is None:
            raise InputError("example_inputs are needed to capture the model")
        graph = capture(model_or_graph, example_inputs)
    if passes is not None:
        graph, _ = optimize(graph, passes)
    else:
        graph = graph.copy()
    return graph


def weight_layers(graph: Graph) -> list[Layer]:
    """The graph's weight tensors (floating point, 2-D or more), in the module's order."""
    axes = _matmul_weights(graph)
    tensors: dict[str, torch.Tensor] = dict(graph.module.named_parameters())
    tensors.update(graph.module.named_buffers())
    return [
        Layer(name, tensor, -1 if name in axes else 0)
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and tensor.dim() >= 2
    ]


def _matmul_weights(graph: Graph) -> set[str]:
    """Names of tensors used as the right operand of ``torch.matmul`` (``[in, out]``: channels last)."""
    names = set()
    for node in graph.nodes:
        if node.op == "get_attr" and any(
            user.target in (torch.matmul, torch.mm) and len(user.args) > 1 and user.args[1] is node
            for user in node.users
        ):
            names.add(str(node.target))
    return names


def select_layers(layers: list[Layer], patterns: Any) -> list[Layer]:
    """``layers`` whose names match one of ``patterns`` (names or globs); all of them for None."""
    if patterns is None:
        return layers
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = []
    for pattern in patterns:
        matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, str(pattern))]
        if not matched:
            raise InputError(f"no weight tensor matches '{pattern}' (weights: {', '.join(x.name for x in layers)})")
        chosen += [layer for layer in matched if layer not in chosen]
    return [layer for layer in layers if layer in chosen]


def per_layer(
    layers: list[Layer], value: T | dict[str, T], what: str, check: Callable[[T], T]
) -> list[tuple[Layer, T]]:
    """Pair each layer with its option: one value for all, or ``{name or glob: value}`` for some."""
    if not isinstance(value, dict):
        checked = check(value)
        return [(layer, checked) for layer in layers]
    pairs: dict[str, tuple[Layer, T]] = {}
    for pattern, option in value.items():
        checked = check(option)
        matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, str(pattern))]
        if not matched:
            raise InputError(
                f"{what} given for '{pattern}', which matches no weight tensor "
                f"(weights: {', '.join(x.name for x in layers)})"
            )
        for layer in matched:
            pairs[layer.name] = (layer, checked)
    return [pairs[layer.name] for layer in layers if layer.name in pairs]


def output_error(before: Graph, after: Graph) -> float:
    """Largest absolute output difference on the example inputs, relative to the largest output."""
    reference, result = before(*before.example_inputs), after(*after.example_inputs)
    pairs = zip(_flat(reference), _flat(result), strict=True)
    errors = [float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)) for a, b in pairs]
    return max(errors, default=0.0)


def _flat(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach().float()]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _flat(item)]
    return []


def is_compressed(graph: Any) -> bool:
    """Whether ``graph`` came from ``share_weights`` or ``magnitude_prune`` (its notes say so)."""
    return any(str(note).startswith(COMPRESSION_NOTE) for note in getattr(graph, "notes", []))
