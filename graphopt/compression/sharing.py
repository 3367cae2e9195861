"""Weight sharing: each layer's weights replaced by the nearest of at most ``2**bits`` centroids.

Deep Compression (Han et al., 2016): the values of one layer are clustered by 1-D k-means (sklearn's
``KMeans``, seeded; initialized evenly spaced between the smallest and largest weight, the "linear"
initialization that paper found best: it keeps centroids for the few large weights); each
weight becomes its cluster's centroid (float32). A layer holding exact zeros (pruned first) keeps
them: zero is one of its ``2**bits`` values and the others are clustered from the non-zero weights,
so a layer never has more than ``2**bits`` distinct values. With ``per_channel`` each output channel
has its own ``2**bits`` centroids. With ``channel_scale`` the layer keeps one set of ``2**bits``
centroids but each output channel is first divided by its own scale (its largest magnitude) and
multiplied back after; scales and centroids are float16 values (half the bytes; their float32
product is exact): once BatchNorm is folded, every channel carries its BN scale,
and one codebook cannot follow 48-192 different ranges (coremltools' per-channel-scale palettization).
The factors go on the graph (``module.meta``) so fine-tuning trains the centroids and the artifact
stores scales + codebook + indices. With ``half_biases`` the tensors that are not shared (biases,
which BN folding gives every conv) are rounded to float16 values and stored in 2 bytes: with 4-bit
weights they would otherwise be a fifth of a small CNN's payload.

The graph is what the compiled model computes (BatchNorm already folded into the convs by O2), so the
artifact ``graphopt.compile`` writes from it stores each layer as a codebook and ``bits``-bit indices.

>>> shared, report = graphopt.share_weights(model, torch.randn(1, 784), bits=4)
>>> print(report.table())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from graphopt.compression.codec import ScaledCodebook, check_bits
from graphopt.compression.layers import (
    COMPRESSION_NOTE,
    HALF_TENSORS,
    SCALED_CODEBOOKS,
    Layer,
    output_error,
    per_layer,
    prepare_graph,
    select_layers,
    small_tensors,
    weight_layers,
)
from graphopt.errors import InputError
from graphopt.ir import Graph


@dataclass(frozen=True)
class LayerSharing:
    """One layer after sharing: index bits, distinct values, and bytes as float32 vs codebook + indices."""

    name: str
    shape: tuple[int, ...]
    bits: int
    distinct: int
    zeros: int
    bytes_before: int
    bytes_after: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "shape": list(self.shape)}


@dataclass
class SharingReport:
    """Per-layer results of ``share_weights`` and the output error on the example inputs."""

    layers: list[LayerSharing] = field(default_factory=list)
    per_channel: bool = False
    output_error: float = 0.0
    half_tensors: list[str] = field(default_factory=list)

    @property
    def bytes_before(self) -> int:
        return sum(layer.bytes_before for layer in self.layers)

    @property
    def bytes_after(self) -> int:
        return sum(layer.bytes_after for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "per_channel": self.per_channel,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "output_error": self.output_error,
            "half_tensors": self.half_tensors,
        }

    def table(self) -> Any:
        from rich.table import Table

        from graphopt.report import human_bytes

        table = Table(title=f"weight sharing (output error {self.output_error:.3g} relative)")
        for column in ("layer", "shape", "bits", "distinct", "zeros", "float32", "codebook + indices"):
            table.add_column(column, justify="left" if column == "layer" else "right")
        for layer in self.layers:
            shape = "x".join(map(str, layer.shape))
            cells = (str(layer.bits), str(layer.distinct), str(layer.zeros))
            table.add_row(layer.name, shape, *cells, human_bytes(layer.bytes_before), human_bytes(layer.bytes_after))
        table.add_row("total", "", "", "", "", human_bytes(self.bytes_before), human_bytes(self.bytes_after))
        return table


def share_weights(
    model_or_graph: Any,
    example_inputs: Any = None,
    *,
    bits: int | dict[str, int] = 4,
    per_channel: bool = False,
    channel_scale: bool = False,
    half_biases: bool = False,
    layers: Any = None,
    passes: Any = "O2",
    seed: int = 0,
) -> tuple[Graph, SharingReport]:
    """Cluster each layer's weights into ``2**bits`` shared values; returns ``(graph, report)``.

    ``bits``: 1..8 for every layer, or ``{name or glob: bits}`` (layers not named stay as they are).
    ``per_channel``: one codebook per output channel; ``channel_scale``: one codebook per layer over
    the channels divided by their scales (the two exclude each other).
    ``half_biases``: round the tensors not shared (biases) to float16 values.
    ``layers``: names or globs of the weight tensors to share (default: all). ``passes``: optimize
    the captured graph with these first (default O2, which folds BatchNorm into the convs). The
    model (or graph) given is never modified.
    """
    if per_channel and channel_scale:
        raise InputError("per_channel and channel_scale exclude each other: give one")
    graph = prepare_graph(model_or_graph, example_inputs, passes)
    reference = graph.copy()
    chosen = select_layers(weight_layers(graph), layers)
    report = SharingReport(per_channel=per_channel)
    factors = graph.module.meta.setdefault(SCALED_CODEBOOKS, {})
    for layer, layer_bits in per_layer(chosen, bits, "bits", check_bits):
        factors.pop(layer.name, None)
        if channel_scale:
            shared, factors[layer.name] = _share_scaled(layer, layer_bits, seed)
            report.layers.append(shared)
        else:
            report.layers.append(_share_layer(layer, layer_bits, per_channel, seed))
    if half_biases:
        report.half_tensors = _round_to_half(graph)
    report.output_error = output_error(reference, graph)
    kind = "per channel" if per_channel else "per layer, channel scales" if channel_scale else "per layer"
    graph.notes.append(
        f"{COMPRESSION_NOTE} weights shared in {len(report.layers)} layer(s) "
        f"({kind}), output error {report.output_error:.3g}"
    )
    return graph, report


def _share_layer(layer: Layer, bits: int, per_channel: bool, seed: int) -> LayerSharing:
    weights = layer.tensor.detach().cpu().numpy().astype(np.float32)
    if per_channel:
        moved = np.moveaxis(weights, layer.channel_axis, 0)
        shared = np.stack([cluster(channel, bits, seed) for channel in moved])
        shared = np.moveaxis(shared, 0, layer.channel_axis)
        distinct = max(len(np.unique(channel)) for channel in np.moveaxis(shared, layer.channel_axis, 0))
        codebooks = moved.shape[0]
    else:
        shared = cluster(weights, bits, seed)
        distinct, codebooks = len(np.unique(shared)), 1
    with torch.no_grad():
        layer.tensor.copy_(torch.from_numpy(np.ascontiguousarray(shared)))
    index_bytes = (weights.size * bits + 7) // 8
    return LayerSharing(
        name=layer.name,
        shape=tuple(weights.shape),
        bits=bits,
        distinct=distinct,
        zeros=int(np.count_nonzero(shared == 0)),
        bytes_before=int(weights.nbytes),
        bytes_after=index_bytes + 4 * codebooks * (1 << bits),
    )


def _round_to_half(graph: Graph) -> list[str]:
    """Round the graph's biases to float16 values (those within float16's range); their names."""
    names = []
    for name, tensor in small_tensors(graph).items():
        if tensor.dtype == torch.float32 and bool(torch.isfinite(tensor.half()).all()):
            with torch.no_grad():
                tensor.copy_(tensor.half().float())
            names.append(name)
    graph.module.meta[HALF_TENSORS] = sorted(set(graph.module.meta.get(HALF_TENSORS, [])) | set(names))
    return names


def _share_scaled(layer: Layer, bits: int, seed: int) -> tuple[LayerSharing, ScaledCodebook]:
    """One codebook for the layer's channels each divided by its float16-rounded largest magnitude."""
    weights = layer.tensor.detach().cpu().numpy().astype(np.float32)
    moved = np.moveaxis(weights, layer.channel_axis, 0)
    rows = moved.reshape(len(moved), -1)
    scales = np.abs(rows).max(axis=1)
    scales = np.where(scales > 0, scales, 1).astype(np.float16).astype(np.float32)
    scales = np.where(np.isfinite(scales) & (scales > 0), scales, np.float32(1))
    normalized = (moved / scales.reshape(-1, *([1] * (moved.ndim - 1)))).astype(np.float32)
    centroids, labels = np.unique(cluster(normalized, bits, seed), return_inverse=True)
    factors = ScaledCodebook(
        layer.channel_axis % weights.ndim, scales, centroids.astype(np.float16).astype(np.float32),
        labels.reshape(moved.shape).astype(np.uint8),
    )  # fmt: skip
    shared = factors.values()
    with torch.no_grad():
        layer.tensor.copy_(torch.from_numpy(shared))
    report = LayerSharing(
        name=layer.name,
        shape=tuple(weights.shape),
        bits=bits,
        distinct=len(centroids),
        zeros=int(np.count_nonzero(shared == 0)),
        bytes_before=int(weights.nbytes),
        bytes_after=(weights.size * bits + 7) // 8 + 4 * len(centroids) + 2 * len(scales),
    )
    return report, factors


def cluster(values: np.ndarray, bits: int, seed: int = 0) -> np.ndarray:
    """``values`` (float32) with each replaced by its k-means centroid; at most ``2**bits`` distinct values.

    Exact zeros stay zero and count as one of the ``2**bits`` values.
    """
    from sklearn.cluster import KMeans

    flat = values.ravel()
    nonzero = flat != 0
    clusters = (1 << bits) - (1 if not nonzero.all() else 0)
    points = flat[nonzero].astype(np.float64)
    result = np.where(nonzero, flat, np.float32(0))  # -0.0 becomes +0.0: one zero value
    if len(np.unique(points)) <= clusters:
        return result.reshape(values.shape)
    init = np.linspace(points.min(), points.max(), clusters).reshape(-1, 1)
    kmeans = KMeans(n_clusters=clusters, init=init, n_init=1, random_state=seed, max_iter=100)
    labels = kmeans.fit_predict(points.reshape(-1, 1))
    centroids = kmeans.cluster_centers_.ravel().astype(np.float32)
    centroids[centroids == 0] = np.float32(np.finfo(np.float32).tiny)  # a centroid at 0 would merge with the zeros
    result[nonzero] = centroids[labels]
    return result.reshape(values.shape)
