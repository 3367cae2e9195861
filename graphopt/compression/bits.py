"""Bits per layer for ``share_weights`` from a sensitivity sweep: each layer shared alone, then scored.

Deep Compression gives conv layers 8 bits and fully connected ones 5 because the layers differ in how
much sharing they tolerate; here the sweep measures it. Each layer is shared alone at each candidate
width (the others kept float32) and scored with the user's ``evaluate`` (higher is better); a layer
gets the fewest bits whose score stays within ``max_drop`` of the float32 graph's, or the most bits
tried if none does. Layers interact, so the chosen widths shared together can lose more than
``max_drop``: score the result (and fine-tune it) before trusting it.

>>> bits, sweep = graphopt.choose_bits(model, x[:1], evaluate=accuracy, candidates=(2, 3, 4, 6))
>>> shared, _ = graphopt.share_weights(model, x[:1], bits=bits)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphopt.compression.codec import check_bits
from graphopt.compression.layers import prepare_graph, select_layers, weight_layers
from graphopt.errors import InputError


@dataclass
class BitsSweep:
    """The float32 score, and per layer the score at each width tried and the width chosen."""

    baseline: float
    max_drop: float
    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    chosen: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def choose_bits(
    model_or_graph: Any,
    example_inputs: Any = None,
    *,
    evaluate: Callable[[Any], float],
    candidates: Sequence[int] = (1, 2, 3, 4, 5, 6, 7, 8),
    max_drop: float = 0.5,
    layers: Any = None,
    passes: Any = "O2",
    **share_options: Any,
) -> tuple[dict[str, int], BitsSweep]:
    """``({layer: bits}, sweep)``: per layer the fewest ``candidates`` bits within ``max_drop`` of float32.

    ``evaluate(graph) -> float`` scores a graph (accuracy, higher is better). ``share_options`` go to
    ``share_weights`` (``channel_scale=True``, ``seed``); the bits dict can be passed to it as ``bits``.
    """
    from graphopt.compression.sharing import share_weights

    widths = sorted({check_bits(b) for b in candidates})
    if not widths:
        raise InputError("candidates must name at least one width from 1 to 8")
    if not max_drop >= 0:
        raise InputError(f"max_drop must be a number >= 0, got {max_drop!r}")
    graph = prepare_graph(model_or_graph, example_inputs, passes)
    sweep = BitsSweep(_score(evaluate, graph), float(max_drop))
    for layer in select_layers(weight_layers(graph), layers):
        scores = sweep.scores.setdefault(layer.name, {})
        for bits in widths:
            shared, _ = share_weights(graph, bits=bits, layers=[layer.name], passes=None, **share_options)
            scores[bits] = _score(evaluate, shared)
            if sweep.baseline - scores[bits] <= max_drop:
                break  # widths ascend: the first within the limit is the fewest
        fits = [b for b, s in scores.items() if sweep.baseline - s <= max_drop]
        sweep.chosen[layer.name] = min(fits) if fits else widths[-1]
    return dict(sweep.chosen), sweep


def _score(evaluate: Callable[[Any], float], graph: Any) -> float:
    try:
        value = evaluate(graph)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(f"evaluate raised {type(error).__name__}: {first}") from error
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"evaluate returned a {type(value).__name__}, expected a number")
    return float(value)
