"""Global average pools whose input a static plan quantizes, so the layer computing it has an int8 output.

A CNN's last conv (MobileNet's 1x1 expansion, through ReLU6) or last residual add (ResNet's, through
ReLU) feeds the global average pool, and graphopt's plan quantizes only the classifier's input, after
the pool: that layer's output stays float, and an integer runtime runs it in float (ONNX Runtime's
QLinearConv and QLinearAdd need a QuantizeLinear after them, QLinearGlobalAveragePool one before and
after). With ``QuantizeOptions.global_pools`` the pool reads its input through a calibrated
quantize -> dequantize pair, as ONNX Runtime's own quantizer does. That rounds each activation before
it is averaged (one more rounding than before): measured on the 359 held-out digits, the int8
MobileNet and ResNet samples keep their top-1 (0.9944 both, before and after).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx

from graphopt.ir import Graph
from graphopt.metadata import info
from graphopt.op_kinds import op_kind
from graphopt.passes.quant_residual import ResidualAdd
from graphopt.passes.quant_rewrite import Site

#: clamps between the layer and the pool: rounding commutes with them, so the layer's own output can be
#: quantized with the pool input's pair (graphopt/onnx/qdq_export.py moves a copy of it there)
CLAMPS = ("relu", "relu6")


@dataclass
class GlobalPool(ResidualAdd):
    """A global average pool to read its input through a pair, needed (as a residual add) while one of
    ``producers``, the quantized layers behind that input, is quantized."""


def _layer_behind(graph: Graph, node: fx.Node) -> fx.Node:
    """``node``, or the node a chain of single-use clamps ending in it starts from."""
    while op_kind(graph.module, node) in CLAMPS and isinstance(node.args[0], fx.Node) and len(node.args[0].users) == 1:
        node = node.args[0]
    return node


def find_global_pools(graph: Graph, sites: list[Site], adds: list[ResidualAdd]) -> list[GlobalPool]:
    """Global average pools (graph order, output 1x1) whose input a conv2d site or one of the quantized
    residual ``adds`` computes, directly or through ReLU/ReLU6."""
    convs = {site.node.name: [site.node.name] for site in sites if site.kind == "conv2d"}
    producers = {**convs, **{add.node.name: add.producers for add in adds}}
    pools = []
    for node in graph.compute_nodes():
        if op_kind(graph.module, node) != "adaptive_avg_pool2d" or not isinstance(node.args[0], fx.Node):
            continue
        shape, source = info(node).shape, node.args[0]
        if shape is None or tuple(shape[-2:]) != (1, 1) or info(source).dtype != "float32":
            continue
        behind = _layer_behind(graph, source).name
        if behind in producers:
            pools.append(GlobalPool(node, "global_pool", [source], producers=producers[behind]))
    return pools
