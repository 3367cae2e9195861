"""Static post-training int8 quantization: observe, calibrate, insert quantize/dequantize pairs.

Each linear, conv2d and matmul reads its activation inputs through ``quantize -> dequantize``
(int8 symmetric or uint8 affine, one scale per tensor, picked by the calibration method) and its
weight through ``dequantize_per_channel`` of an int8 buffer (symmetric, one scale per output
channel). The graph computes exactly what an integer kernel computes, up to float rounding of the
accumulation: ``y = (s_x * s_w[c]) * sum((q_x - z_x) * q_w) + b``, which is why the targets can
rewrite each QDQ pattern into int8 x int8 -> int32 compute with one dequantize epilogue.

Outputs of quantized ops stay float (the epilogue dequantizes), so residual adds and concatenations
add or join float tensors and need no shared scale; the quantizer of whichever op consumes their
result observes the joined tensor and gives it one scale. An activation that feeds several
quantized ops (q, k and v projections) is quantized once, with one scale, and shared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch
from torch import fx

from graphopt.calibration import METHODS, choose_qparams, prepare
from graphopt.errors import InputError
from graphopt.ir import Graph
from graphopt.pass_api import PassResult, on_node, register_pass
from graphopt.passes.quant_rewrite import Site, find_sites, observe, remove_unused_attributes, rewrite_weights

QParams = tuple[float, int, int, int]  # scale, zero_point, qmin, qmax
ACTIVATIONS = ("int8", "uint8")


def calibrate(
    graph: Graph,
    sites: list[Site],
    batches: Iterable[tuple[torch.Tensor, ...]],
    *,
    method: str = "minmax",
    activation: str = "int8",
    percentile: float = 99.99,
) -> dict[str, QParams]:
    """Quantization parameters for every activation the sites read, by the name of its node."""
    if method not in METHODS:
        raise InputError(f"unknown calibration method '{method}' (choose from {', '.join(METHODS)})")
    if activation not in ACTIVATIONS:
        raise InputError(f"unknown activation type '{activation}' (choose from {', '.join(ACTIVATIONS)})")
    observers = observe(graph, sites, batches)
    return {
        name: choose_qparams(*observer.value_range(method, percentile), symmetric=activation == "int8")
        for name, observer in observers.items()
    }


def apply_static(graph: Graph, sites: list[Site], qparams: dict[str, QParams], *, per_channel: bool = True) -> None:
    """Rewrite ``sites`` in place: int8 weights, and a shared QDQ pair on each activation they read."""
    fx_graph = graph.module.graph
    dequantized: dict[str, fx.Node] = {}
    for site in sites:
        node = graph.node(site.node.name)
        with on_node(node):
            rewrite_weights(graph, replace(site, node=node), per_channel=per_channel)
            for source in [graph.node(a.name) for a in site.activations]:
                if source.name not in dequantized:
                    dequantized[source.name] = _insert_qdq(fx_graph, source, qparams[source.name])
                node.replace_input_with(source, dequantized[source.name])
    remove_unused_attributes(graph.module)


def _insert_qdq(fx_graph: fx.Graph, source: fx.Node, qparams: QParams) -> fx.Node:
    scale, zero_point, qmin, qmax = qparams
    with fx_graph.inserting_after(source):
        quantized = fx_graph.call_function(torch.ops.graphopt.quantize.default, (source, scale, zero_point, qmin, qmax))
    with fx_graph.inserting_after(quantized):
        restored = fx_graph.call_function(torch.ops.graphopt.dequantize.default, (quantized, scale, zero_point))
    quantized.name, restored.name = f"{source.name}_q", f"{source.name}_dq"
    return restored


@register_pass(
    "insert_qdq",
    requires=("calibration_data",),
    reports=("quantized", "skipped", "method", "activation"),
    # 8-bit rounding of every weight and activation: each layer adds up to half a step (about
    # 0.4% of its range) of error, a few layers deep that stays well under 10% of the largest logit.
    tolerance=0.1,
)
def insert_qdq(
    graph: Graph,
    *,
    calibration_data: Any = None,
    method: str = "minmax",
    per_channel: bool = True,
    activation: str = "int8",
    percentile: float = 99.99,
    skip: tuple[str, ...] = (),
) -> PassResult:
    """Static int8 quantization of linear/conv2d/matmul, calibrated on the given data."""
    calibration = prepare(calibration_data, graph.example_inputs)
    sites, skipped = find_sites(graph, skip=skip)
    qparams = calibrate(graph, sites, calibration.batches, method=method, activation=activation, percentile=percentile)
    apply_static(graph, sites, qparams, per_channel=per_channel)
    details = {
        "quantized": [site.node.name for site in sites],
        "skipped": skipped,
        "method": method,
        "activation": activation,
        "calibration_samples": calibration.samples,
    }
    return PassResult(graph, changed=bool(sites), details=details)
