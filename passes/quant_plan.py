"""The one quantization route: options, a plan (which layers, which scales), and applying it.

Every way to quantize goes through here: the ``insert_qdq`` / ``insert_dynamic_qdq`` passes (the O3
preset), ``graphopt.compile(quantize="int8")``, ``graphopt.quantize`` and ``graphopt quantize``.
``plan`` does the expensive part once (finding the layers, observing the calibration data), so
``apply`` can build several variants cheaply (the sensitivity analysis keeps different layers in
float). Static plans quantize linear/conv2d/matmul activations with calibrated scales
(insert_qdq's docstring has the arithmetic), both inputs of each residual add a quantized conv
feeds (quant_residual's docstring says why) and the input of a global average pool one of them feeds
(quant_pool's); dynamic plans quantize Linear weights and scale
activations at run time (quant_dynamic's docstring says why).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import fx

from graphopt.calibration import METHODS, choose_qparams
from graphopt.errors import InputError
from graphopt.ir import Graph
from graphopt.pass_api import on_node
from graphopt.passes._layers import remove_dead_nodes, remove_unused_attributes
from graphopt.passes.quant_pool import GlobalPool, find_global_pools
from graphopt.passes.quant_residual import ResidualAdd, find_residual_adds
from graphopt.passes.quant_rewrite import Site, find_sites, observe, rewrite_weights

QParams = tuple[float, int, int, int]  # scale, zero_point, qmin, qmax
ACTIVATIONS = ("int8", "uint8")
MODES = ("auto", "static", "dynamic")
DYNAMIC_RANGE = (0, 255)  # uint8 affine: the run-time range need not be symmetric
STATIC_KINDS = ("linear", "conv2d", "matmul")
DYNAMIC_KINDS = ("linear", "matmul")


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize; checked when made, so a typo fails before any work.

    ``mode`` "auto" is static when calibration data is given, dynamic otherwise. ``skip`` names
    nodes (glob patterns on node names or module paths, or module types such as ``nn.Conv2d``) to
    keep in float. ``method`` and ``percentile`` choose activation ranges (static only).
    ``residual_adds`` (static only) also quantizes both inputs of a residual add that a quantized
    conv feeds, so that conv's output is int8 too (what integer runtimes such as ONNX Runtime's
    QLinearConv need); False keeps those adds in float, as graphopt did before. ``global_pools``
    (static only) likewise quantizes the input of a global average pool that such a conv or add
    computes (through ReLU/ReLU6), for QLinearGlobalAveragePool and the layer before it.
    """

    mode: str = "auto"
    method: str = "minmax"
    per_channel: bool = True
    activation: str = "int8"
    percentile: float = 99.99
    skip: tuple[Any, ...] = field(default=())
    kinds: tuple[str, ...] | None = None
    residual_adds: bool = True
    global_pools: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown quantization mode '{self.mode}' (choose from {', '.join(MODES)})")
        if self.method not in METHODS:
            raise InputError(f"unknown calibration method '{self.method}' (choose from {', '.join(METHODS)})")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"unknown activation type '{self.activation}' (choose from {', '.join(ACTIVATIONS)})")
        if not 0 < self.percentile <= 100:
            raise InputError(f"percentile must be in (0, 100], got {self.percentile}")
        for name in ("residual_adds", "global_pools"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        object.__setattr__(self, "skip", tuple(self.skip))

    def resolve(self, has_data: bool) -> QuantizeOptions:
        """These options with ``mode`` "auto" made concrete; static needs data."""
        if self.mode == "static" and not has_data:
            raise InputError("static quantization needs calibration data (or use mode='dynamic')")
        if self.mode != "auto":
            return self
        return replace(self, mode="static" if has_data else "dynamic")


@dataclass
class QuantPlan:
    """What ``apply`` will do: the layers to quantize (graph order), those skipped, the scales, and
    the residual adds and global pools whose inputs are quantized with them."""

    options: QuantizeOptions
    sites: list[Site]
    skipped: list[str]
    qparams: dict[str, QParams]
    adds: list[ResidualAdd] = field(default_factory=list)
    pools: list[GlobalPool] = field(default_factory=list)

    @property
    def layers(self) -> list[str]:
        return [site.node.name for site in self.sites]


def plan(
    graph: Graph, options: QuantizeOptions, batches: Iterable[tuple[torch.Tensor, ...]] | None = None
) -> QuantPlan:
    """Find the layers to quantize and, for a static plan, calibrate their activations on ``batches``."""
    options = options.resolve(has_data=batches is not None)
    if options.mode == "static":
        sites, skipped = find_sites(graph, kinds=options.kinds or STATIC_KINDS, skip=options.skip)
        adds = find_residual_adds(graph, sites) if options.residual_adds else []
        pools = find_global_pools(graph, sites, adds) if options.global_pools else []
        qparams = calibrate(
            graph,
            [*sites, *adds, *pools],
            batches or [],
            method=options.method,
            activation=options.activation,
            percentile=options.percentile,
        )
        return QuantPlan(options, sites, skipped, qparams, adds, pools)
    sites, skipped = dynamic_sites(graph, kinds=options.kinds or DYNAMIC_KINDS, skip=options.skip)
    return QuantPlan(options, sites, skipped, {})


def apply(graph: Graph, quant_plan: QuantPlan, *, keep_float: Iterable[str] = ()) -> list[str]:
    """Quantize ``graph`` in place as planned (it must be the planned graph or a copy of it),
    except the layers named in ``keep_float``; returns the names of the layers quantized."""
    kept = set(keep_float)
    sites = [site for site in quant_plan.sites if site.node.name not in kept]
    if quant_plan.options.mode == "static":
        names = [site.node.name for site in sites]
        adds = [add for add in [*quant_plan.adds, *quant_plan.pools] if add.needed(names)]
        apply_static(graph, sites, quant_plan.qparams, per_channel=quant_plan.options.per_channel, adds=adds)
    else:
        apply_dynamic(graph, sites, per_channel=quant_plan.options.per_channel)
    return [site.node.name for site in sites]


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


def apply_static(
    graph: Graph,
    sites: list[Site],
    qparams: dict[str, QParams],
    *,
    per_channel: bool = True,
    adds: Sequence[ResidualAdd] = (),
) -> None:
    """Rewrite ``sites`` in place: int8 weights, and a shared QDQ pair on each activation they read
    and on each input of ``adds``."""
    _rewrite_sites(
        graph,
        sites,
        per_channel,
        lambda fx_graph, source: _insert_qdq(fx_graph, source, qparams[source.name]),
        readers=adds,
    )


def _rewrite_sites(
    graph: Graph,
    sites: list[Site],
    per_channel: bool,
    quantize_input: Callable[[fx.Graph, fx.Node], fx.Node],
    readers: Sequence[Site] = (),
) -> None:
    """int8 weights for every site; each activation a site (or one of ``readers``, which have no
    weights) reads goes through ``quantize_input``, made once per activation and shared by every node
    that reads it (q, k and v projections; a conv and the residual add reading the same block input)."""
    fx_graph = graph.module.graph
    made: dict[str, fx.Node] = {}
    for index, site in enumerate([*sites, *readers]):
        node = graph.node(site.node.name)
        with on_node(node):
            if index < len(sites):  # a layer, not one of the readers
                rewrite_weights(graph, replace(site, node=node), per_channel=per_channel)
            for source in [graph.node(a.name) for a in site.activations]:
                if source.name not in made:
                    made[source.name] = quantize_input(fx_graph, source)
                node.replace_input_with(source, made[source.name])
    remove_dead_nodes(graph.module)  # the float layers just replaced, then the tensors they read
    remove_unused_attributes(graph.module)


def _insert_qdq(fx_graph: fx.Graph, source: fx.Node, qparams: QParams) -> fx.Node:
    scale, zero_point, qmin, qmax = qparams
    with fx_graph.inserting_after(source):
        quantized = fx_graph.call_function(torch.ops.graphopt.quantize.default, (source, scale, zero_point, qmin, qmax))
    with fx_graph.inserting_after(quantized):
        restored = fx_graph.call_function(torch.ops.graphopt.dequantize.default, (quantized, scale, zero_point))
    quantized.name, restored.name = f"{source.name}_q", f"{source.name}_dq"
    return restored


def dynamic_sites(
    graph: Graph, *, kinds: Sequence[str] = ("linear", "matmul"), skip: Iterable[str | type] = ()
) -> tuple[list[Site], list[str]]:
    """Layers with a constant weight: Linear, and the matmul ``pretranspose_weights`` makes of one
    (a matmul of two activations has no weight to store as int8)."""
    sites, skipped = find_sites(graph, kinds=kinds, skip=skip)
    return [s for s in sites if s.kind != "matmul" or s.constant_weight], skipped


def apply_dynamic(graph: Graph, sites: list[Site], *, per_channel: bool = True) -> None:
    """Rewrite ``sites`` in place: int8 weights and a run-time fake-quantize on each activation."""
    _rewrite_sites(graph, sites, per_channel, _insert_dynamic_quantize)


def _insert_dynamic_quantize(fx_graph: fx.Graph, source: fx.Node) -> fx.Node:
    with fx_graph.inserting_after(source):
        quantized = fx_graph.call_function(torch.ops.graphopt.fake_quantize_dynamic.default, (source, *DYNAMIC_RANGE))
    quantized.name = f"{source.name}_dynamic_q"
    return quantized
