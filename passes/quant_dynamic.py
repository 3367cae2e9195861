"""Dynamic int8 quantization: int8 weights, activations quantized at run time from their own range.

Needs no calibration data, which is why it is the fallback for Linear-heavy models (MLPs,
transformers) when none is given. Each linear reads its input through ``fake_quantize_dynamic``
(uint8 affine, scale and zero point measured on the tensor each run) and its weight through
``dequantize_per_channel`` of an int8 buffer. Convolutions are left in float by default: their
activations are large and a per-run min/max over them costs more than it saves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import torch
from torch import fx

from graphopt.ir import Graph
from graphopt.pass_api import PassResult, on_node, register_pass
from graphopt.passes.quant_rewrite import Site, find_sites, remove_unused_attributes, rewrite_weights

DYNAMIC_RANGE = (0, 255)  # uint8 affine: the run-time range need not be symmetric


def dynamic_sites(
    graph: Graph, *, kinds: Sequence[str] = ("linear", "matmul"), skip: Iterable[str | type] = ()
) -> tuple[list[Site], list[str]]:
    """Layers with a constant weight: Linear, and the matmul ``pretranspose_weights`` makes of one
    (a matmul of two activations has no weight to store as int8)."""
    sites, skipped = find_sites(graph, kinds=kinds, skip=skip)
    return [s for s in sites if s.kind != "matmul" or s.constant_weight], skipped


def apply_dynamic(graph: Graph, sites: list[Site], *, per_channel: bool = True) -> None:
    """Rewrite ``sites`` in place: int8 weights and a run-time fake-quantize on each activation."""
    fx_graph = graph.module.graph
    quantized: dict[str, fx.Node] = {}
    for site in sites:
        node = graph.node(site.node.name)
        with on_node(node):
            rewrite_weights(graph, replace(site, node=node), per_channel=per_channel)
            for source in [graph.node(a.name) for a in site.activations]:
                if source.name not in quantized:
                    with fx_graph.inserting_after(source):
                        quantized[source.name] = fx_graph.call_function(
                            torch.ops.graphopt.fake_quantize_dynamic.default, (source, *DYNAMIC_RANGE)
                        )
                    quantized[source.name].name = f"{source.name}_dynamic_q"
                node.replace_input_with(source, quantized[source.name])
    remove_unused_attributes(graph.module)


@register_pass("insert_dynamic_qdq", reports=("quantized", "skipped"), tolerance=0.1)
def insert_dynamic_qdq(
    graph: Graph,
    *,
    per_channel: bool = True,
    kinds: tuple[str, ...] = ("linear", "matmul"),
    skip: tuple[str, ...] = (),
) -> PassResult:
    """Dynamic int8 quantization of linear layers: int8 weights, activations scaled at run time."""
    sites, skipped = dynamic_sites(graph, kinds=kinds, skip=skip)
    apply_dynamic(graph, sites, per_channel=per_channel)
    return PassResult(
        graph, changed=bool(sites), details={"quantized": [s.node.name for s in sites], "skipped": skipped}
    )
