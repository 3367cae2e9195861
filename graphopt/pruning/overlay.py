"""What the HTML viewer draws over a graph for pruning: each dependency group's nodes, its sensitivity.

A group's *members* are every node whose output carries one of its channels (the producing
Conv/Linear, the BatchNorms, activations, adds and concats it flows through) and every layer that
reads them (the consumers whose input columns go with it): highlighting them shows how far one
decision reaches across the graph. With a ``SensitivityReport`` each group also gets its *damage*,
the mean metric loss over the levels measured (``report.loss``: 0 is harmless), which the viewer
maps to a colour per node (a node in several groups takes the most sensitive one).

>>> payload["pruning"] = overlay(graph, sensitivity=report)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphopt.ir import Graph
from graphopt.pruning.dependency import analyze


def overlay(graph: Graph, *, sensitivity: Any = None, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """``{"groups": [{index, unit, channels, text, members, outputs, damage}], "metric": name | None}``.

    ``outputs`` are the members whose own output carries the group (the nodes coloured by its
    damage); ``members`` adds the consumers that read it. ``damage`` is None without a report.
    """
    analysis = analyze(graph, ignore=ignore)
    order = {node.name: index for index, node in enumerate(graph.module.graph.nodes)}
    damage = _damage(sensitivity, analysis) if sensitivity is not None else {}
    groups = []
    for group in analysis.groups:
        roots = set(group.units)
        carries = {
            node.name
            for node, channel_map in analysis.maps.items()
            if any(analysis.root(i) in roots for i in channel_map.ids)
        }
        readers = {
            use.node.name
            for use in analysis.uses
            if use.input is not None and any(analysis.root(i) in roots for i in use.input.ids)
        }
        groups.append(
            {
                "index": group.index,
                "unit": group.unit,
                "channels": group.size,
                "text": group.describe(),
                "outputs": sorted(carries, key=order.__getitem__),
                "members": sorted(carries | readers, key=order.__getitem__),
                "damage": damage.get(group.index),
            }
        )
    return {"groups": groups, "metric": getattr(sensitivity, "metric", None)}


def _damage(report: Any, analysis: Any) -> dict[int, float]:
    """Mean metric loss of each group over its measured levels (groups the report lacks: absent)."""
    sizes = {g.index: g.size for g in analysis.groups}
    losses: dict[int, list[float]] = {}
    for row in report.rows:
        if sizes.get(row.group) == row.channels:  # a report of another graph matches nothing
            losses.setdefault(row.group, []).append(report.loss(row))
    return {group: sum(values) / len(values) for group, values in losses.items()}
