"""ONNX TensorScatter, MaxUnpool and TfIdfVectorizer as gathers, scatters and compares of static shape.

Each follows the onnx reference implementation: TensorScatter writes ``update`` into the cache along
``axis`` at every batch row's write index (``circular``: modulo the cache length), computed as one
gather of ``update`` and a ``where``, so the indices stay run-time values; MaxUnpool scatters the
values to their flat indices in the inferred output and zero-pads that to ``output_shape`` at the end;
TfIdfVectorizer counts every pool n-gram (each skip distance) as a compare of the input at constant
positions, summed into the n-gram's output column by a constant matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from graphopt.onnx.ops import Function


def tensor_scatter(
    past_cache: torch.Tensor, update: torch.Tensor, write_indices: torch.Tensor | None = None, *, mode: str, axis: int
) -> torch.Tensor:
    """ONNX TensorScatter (24): cache position p of batch row b takes update step ``p - write_indices[b]``
    (mod the cache length when circular) where that step exists, else keeps the past value."""
    rank = past_cache.dim()
    dim = axis % rank
    if dim == 0:
        raise ValueError("TensorScatter's axis is the batch axis")
    batch, cache, steps = past_cache.shape[0], past_cache.shape[dim], update.shape[dim]
    start = (
        write_indices.to(torch.int64).reshape(batch, 1)
        if write_indices is not None
        else torch.zeros((batch, 1), dtype=torch.int64)
    )
    step = torch.arange(cache, dtype=torch.int64).reshape(1, cache) - start  # (batch, cache)
    if mode == "circular":
        step = torch.remainder(step, cache)
    valid = (step >= 0) & (step < steps)
    shape = [1] * rank
    shape[0], shape[dim] = batch, cache
    index = step.clamp(0, steps - 1).reshape(shape)
    full = list(update.shape)
    full[dim] = cache
    taken = torch.gather(update, dim, index.expand(full))
    return torch.where(valid.reshape(shape), taken, past_cache)


def max_unpool(
    x: torch.Tensor,
    indices: torch.Tensor,
    output_shape: Any = None,
    *,
    kernel: list[int],
    pads: list[int],
    strides: list[int],
) -> torch.Tensor:
    """ONNX MaxUnpool: ``x``'s values at their flat ``indices`` of the inferred output
    ((in - 1) * stride - pads + kernel per spatial axis), zero-padded at the end to ``output_shape``."""
    spatial = len(kernel)
    strides = strides or [1] * spatial
    pads = pads or [0] * (2 * spatial)
    inferred = [x.shape[0], x.shape[1]] + [
        (x.shape[2 + d] - 1) * strides[d] - (pads[d] + pads[spatial + d]) + kernel[d] for d in range(spatial)
    ]
    flat = x.new_zeros((math.prod(inferred),)).scatter(0, indices.to(torch.int64).reshape(-1), x.reshape(-1))
    out = flat.reshape(inferred)
    if output_shape is None:
        return out
    target = [int(v) for v in np.asarray(output_shape).reshape(-1).tolist()]
    widths: list[int] = []
    for d in reversed(range(2, len(inferred))):
        widths += [0, target[d] - inferred[d]]
    return F.pad(out, widths) if any(widths) else out


def ngram_table(
    pool: list[int], counts: list[int], indexes: list[int], min_length: int, max_length: int
) -> list[tuple[tuple[int, ...], int]]:
    """The pool's n-grams of a length in [min_length, max_length], each with its output column."""
    grams: list[tuple[tuple[int, ...], int]] = []
    gram_id = 0  # position in ``indexes``, counted over every length (as the reference numbers them)
    for i, begin in enumerate(counts):
        end = counts[i + 1] if i + 1 < len(counts) else len(pool)
        size = i + 1
        for start in range(begin, end - size + 1, size):
            if min_length <= size <= max_length:
                grams.append((tuple(pool[start : start + size]), indexes[gram_id]))
            gram_id += 1
    return grams


def tfidf_vectorizer(
    x: torch.Tensor,
    *,
    grams: list[tuple[tuple[int, ...], int]],
    width: int,
    skips: int,
    mode: str,
    weights: list[float],
) -> torch.Tensor:
    """ONNX TfIdfVectorizer on [C] or [B, C] integers -> float32 [width] or [B, width]: per n-gram the
    number of matches, over every skip distance 1..skips + 1 (unigrams once), weighted as ``mode`` says."""
    rows = x.reshape(1, -1) if x.dim() <= 1 else x
    columns = rows.shape[1]
    counts = torch.zeros((rows.shape[0], width), dtype=torch.float32)
    by_size: dict[int, list[tuple[tuple[int, ...], int]]] = {}
    for gram, column in grams:
        by_size.setdefault(len(gram), []).append((gram, column))
    value = rows.to(torch.int64)
    for size, members in sorted(by_size.items()):
        positions, expected, target = [], [], []
        for skip in range(1, (skips + 2) if size > 1 else 2):
            starts = range(columns - skip * (size - 1))
            for gram, column in members:
                for start in starts:
                    positions.append([start + skip * k for k in range(size)])
                    expected.append(gram)
                    target.append(column)
        if not positions:
            continue
        index = torch.tensor(positions, dtype=torch.int64)  # (patterns, size)
        picked = value.index_select(1, index.reshape(-1)).reshape(rows.shape[0], len(positions), size)
        hits = ((picked == torch.tensor(expected, dtype=torch.int64)).sum(-1) == size).to(torch.float32)
        onehot = np.zeros((len(positions), width), dtype=np.float32)
        onehot[np.arange(len(positions)), target] = 1.0
        counts = counts + hits @ torch.from_numpy(onehot)
    if mode in ("IDF", "TFIDF") and weights:
        scale = torch.tensor(weights, dtype=torch.float32)
        counts = torch.where(counts > 0, scale, torch.zeros_like(counts)) if mode == "IDF" else counts * scale
    elif mode == "IDF":
        counts = (counts > 0).to(torch.float32)
    return counts.reshape(width) if x.dim() <= 1 else counts


def register(add: Callable[..., None]) -> None:
    """Register TensorScatter, MaxUnpool and TfIdfVectorizer through ``add(op, versions, converter)``."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def result(module: Any, node: Any) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def scatter_converter(node: Any, graph: Any) -> Any:
        a = node.attributes
        mode = str(a.get("mode", "linear"))
        if mode not in ("linear", "circular"):
            raise NotImplementedError(f"TensorScatter mode {mode!r} (ONNX defines linear and circular)")
        return result(Function(tensor_scatter, mode=mode, axis=int(a.get("axis", -2))), node)

    add("TensorScatter", (24,), scatter_converter)

    def unpool_converter(node: Any, graph: Any) -> Any:
        a = node.attributes
        module = Function(
            max_unpool,
            kernel=[int(v) for v in a["kernel_shape"]],
            pads=[int(v) for v in a.get("pads", [])],
            strides=[int(v) for v in a.get("strides", [])],
        )
        return result(module, node)

    add("MaxUnpool", (9,), unpool_converter)

    def tfidf_converter(node: Any, graph: Any) -> Any:
        a = node.attributes
        if a.get("pool_strings"):
            raise NotImplementedError("TfIdfVectorizer over strings (pool_strings): tensors hold numbers only")
        mode = str(a.get("mode", ""))
        if mode not in ("TF", "IDF", "TFIDF"):
            raise NotImplementedError(f"TfIdfVectorizer mode {mode!r} (ONNX defines TF, IDF and TFIDF)")
        indexes = [int(v) for v in a["ngram_indexes"]]
        grams = ngram_table(
            [int(v) for v in a.get("pool_int64s", [])],
            [int(v) for v in a["ngram_counts"]],
            indexes,
            int(a["min_gram_length"]),
            int(a["max_gram_length"]),
        )
        module = Function(
            tfidf_vectorizer,
            grams=grams,
            width=max(indexes) + 1,
            skips=int(a["max_skip_count"]),
            mode=mode,
            weights=[float(v) for v in a.get("weights", [])],
        )
        return result(module, node)

    add("TfIdfVectorizer", (9,), tfidf_converter)
