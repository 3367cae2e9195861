"""The compressed artifact: weights kept out of the library, stored as ``weights.gopw``, decoded at load.

A plain artifact binds the weights into ``model.so`` as constants. A compressed one (``compress=True``,
or a graph from ``graphopt.share_weights`` / ``graphopt.magnitude_prune``) is built instead with the
weights as inputs of ``main`` after the model's own, and TVM's ``LiftTransformParams`` moves every
computation on weights alone (transposes, layout changes to NHWC/HWIO) into a second function,
``main_transform_params``. The weights go into ``weights.gopw`` (``graphopt.compression.codec``:
codebook + packed indices + sparse mask, entropy-coded); the loader decodes them once, runs
``main_transform_params`` once, and every call passes the prepared weights to ``main``.

The decoded weights are bit-for-bit the graph's, so the loaded artifact computes exactly what the
in-memory compiled model computes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tvm import relax

from graphopt.compression.codec import ScaledCodebook, encode_weights
from graphopt.compression.layers import SCALED_CODEBOOKS
from graphopt.ir import Graph
from graphopt.targets.registry import TargetBackend
from graphopt.targets.runtime import TRANSFORM_PARAMS, WEIGHTS

PARAMS_NOTE = f"inputs of main after the model's inputs, decoded from {WEIGHTS} at load time"


def with_buffers_as_parameters(graph: Graph) -> Graph:
    """A copy of ``graph`` whose buffers (int8 weights of a quantized graph, constants) are parameters:
    the lowering keeps parameters as inputs of ``main`` and binds buffers into the library."""
    graph = graph.copy()
    for module in graph.module.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if name in module._non_persistent_buffers_set:
                continue
            del module._buffers[name]
            module.register_parameter(name, torch.nn.Parameter(buffer, requires_grad=False))
    return graph


def lifting_backend(backend: TargetBackend) -> TargetBackend:
    """``backend`` whose schedule step ends by lifting the weight-only computations out of ``main``."""

    def schedule(mod: Any, target: Any, options: dict[str, Any]) -> Any:
        return relax.transform.LiftTransformParams()(backend.schedule(mod, target, options))

    return dataclasses.replace(backend, schedule=schedule)


def weight_arrays(mod: Any, params: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """The weights ``main`` takes after the model's inputs, in its order, as named numpy arrays."""
    values = list(mod["main"].attrs["params"])
    names = list(params) if len(params) == len(values) else [f"param_{i}" for i in range(len(values))]
    return [(name, value.numpy()) for name, value in zip(names, values, strict=True)]


def codebook_hints(graph: Graph) -> list[ScaledCodebook]:
    """The scaled-codebook factors ``share_weights(channel_scale=True)`` left on the graph (or none)."""
    return list(getattr(graph.module, "meta", {}).get(SCALED_CODEBOOKS, {}).values())


def write_weights(
    directory: str | Path, weights: list[tuple[str, np.ndarray]], hints: list[ScaledCodebook] | None = None
) -> dict[str, Any]:
    """Write ``weights.gopw`` into ``directory``; returns the manifest's ``weights`` entry."""
    blob, stats, coder = encode_weights(weights, hints=hints or ())
    (Path(directory) / WEIGHTS).write_bytes(blob)
    return {
        "weights": {
            "file": WEIGHTS,
            "coder": coder,
            "transform": TRANSFORM_PARAMS,
            "dense_bytes": sum(s.dense_bytes for s in stats),
            "stored_bytes": len(blob),
            "tensors": [s.to_dict() for s in stats],
        }
    }
