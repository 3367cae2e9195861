"""Residual adds whose inputs a static plan quantizes, so the convs feeding them have int8 outputs.

graphopt's static plan quantizes the inputs of linear/conv2d/matmul, so a layer whose result goes
straight into a residual add (ResNet's second conv and shortcut conv, MobileNet's projection) has a
float output. An integer runtime runs a conv only when its output is quantized (ONNX Runtime's
QLinearConv needs a QuantizeLinear right after it), and moving an existing pair there would change
values. ONNX Runtime's own quantizer quantizes both inputs of such an add (its QLinearAdd); with
``QuantizeOptions.residual_adds`` graphopt does the same: both inputs of an add of two same-shaped
float activations, one of them computed by a quantized conv, read a calibrated quantize ->
dequantize pair. A block input that a layer reads anyway (the shortcut of ResNet's first block, of
each MobileNet residual block) already has its pair, which the add then shares: one scale, no new
calibration. The graph still runs in PyTorch, and the targets compute the pairs as they stand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import fx

from graphopt.ir import Graph
from graphopt.metadata import info
from graphopt.op_kinds import op_kind
from graphopt.passes.quant_rewrite import Site

#: The layers whose residual adds are quantized. Convs only: ONNX Runtime runs a Gemm or MatMul with a
#: float output as an integer kernel too (QGemm, as the samples' classifiers; MatMulIntegerToFloat), so a
#: Linear gains nothing, and rounding a transformer's residual stream to one int8 scale costs accuracy:
#: the static int8 transformer sample's output error vs float went from 0.6% to 1.7% with its adds.
PRODUCERS = ("conv2d",)


@dataclass
class ResidualAdd(Site):
    """An add to read through quantize -> dequantize pairs (``activations``: both inputs), needed only
    while one of ``producers`` (the quantized convs that compute an input) is quantized."""

    producers: list[str] = field(default_factory=list)

    def needed(self, quantized: Iterable[str]) -> bool:
        return bool(set(self.producers) & set(quantized))


def _residual_inputs(graph: Graph, node: fx.Node) -> list[fx.Node] | None:
    """The activation inputs of ``node`` if it is ``a + b`` of same-shaped float32 tensors (not a bias
    add of a constant, not a broadcast, no ``alpha``; float32 as ``dequantize`` returns), else None."""
    if op_kind(graph.module, node) != "add" or node.kwargs or len(node.args) != 2:
        return None
    inputs = [a for a in node.args if isinstance(a, fx.Node) and a.op != "get_attr"]
    if len(inputs) != 2:
        return None
    shapes = {info(a).shape for a in (*inputs, node)}
    dtypes = {info(a).dtype for a in (*inputs, node)}
    if len(shapes) != 1 or None in shapes or dtypes != {"float32"}:
        return None
    return list(dict.fromkeys(inputs))  # x + x reads one tensor


def find_residual_adds(graph: Graph, sites: list[Site]) -> list[ResidualAdd]:
    """Residual adds (graph order) with an input computed directly by one of the conv2d ``sites``."""
    layers = {site.node.name for site in sites if site.kind in PRODUCERS}
    adds = []
    for node in graph.compute_nodes():
        inputs = _residual_inputs(graph, node)
        producers = [a.name for a in inputs or () if a.name in layers]
        if inputs and producers:
            adds.append(ResidualAdd(node, "add", inputs, producers=producers))
    return adds
