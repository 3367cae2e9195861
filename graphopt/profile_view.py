"""What the HTML viewer draws over a graph for a kernel profile: each node's kernels, their measured time.

A ``KernelProfile`` (``CompiledModel.profile``) times every kernel of the compiled model; each
kernel names the graph nodes it computes (``Manifest.kernel_nodes``, followed exactly through the
lowering by ``targets/pipeline/kernel_nodes.py``, per call). The viewer colours a node by its
kernels' share of the instrumented run (a kernel that identical layers share counts for each layer
by its calls: one of two calls is half the kernel's time) and lists every kernel, those computing no graph node (layout transposes
TVM inserted, copies) and the VM's own calls included, so the shares add up to the whole run.

>>> payload["profile"] = profile_overlay(compiled.profile(x), final_graph_names)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphopt.errors import InputError


def profile_overlay(profile: Any, node_names: Iterable[str], *, target: str | None = None) -> dict[str, Any]:
    """``{"kernels": [{name, calls, ms, share, gflops, flops, nodes}], "nodes": {name: [{kernel, part}]},
    "kernel_ms", "whole_ms", "runs", "target", "notes"}`` for the page; kernels slowest first.

    ``kernel`` indexes ``kernels``; ``part`` is the fraction of that kernel's calls that compute
    the node (1 unless identical layers share the kernel), so a node's share is ``sum(share * part)``.

    ``profile`` is a ``KernelProfile`` or its ``to_dict()``. ``node_names`` are the nodes of the
    graph that was compiled (the page's last state); a kernel node not among them is reported in
    ``notes`` (a profile of another graph), not silently dropped.
    """
    data = profile.to_dict() if hasattr(profile, "to_dict") else profile
    if not isinstance(data, Mapping) or not isinstance(data.get("kernels"), list):
        raise InputError("profile= must be a KernelProfile (CompiledModel.profile) or its to_dict()")
    kernels = sorted(data["kernels"], key=lambda k: k["ms"], reverse=True)
    total = sum(k["ms"] for k in kernels)
    known = set(node_names)
    rows: list[dict[str, Any]] = []
    by_node: dict[str, list[dict[str, Any]]] = {}
    foreign: list[str] = []
    for index, kernel in enumerate(kernels):
        nodes = list(kernel.get("nodes") or [])
        per_call = [list(call) for call in kernel.get("call_nodes") or []]
        rows.append(
            {
                "name": kernel["name"],
                "calls": kernel["calls"],
                "ms": kernel["ms"],
                "share": kernel["ms"] / total if total > 0 else 0.0,
                "flops": kernel.get("flops"),
                "gflops": kernel.get("gflops"),
                "nodes": nodes,
            }
        )
        for name in nodes:
            part = sum(name in call for call in per_call) / len(per_call) if per_call else 1.0
            if name in known:
                by_node.setdefault(name, []).append({"kernel": index, "part": part})
            elif name not in foreign:
                foreign.append(name)
    notes = list(data.get("notes") or [])
    if not any(row["nodes"] for row in rows):
        notes.append("this artifact records no kernel-to-node map (built before it was kept): no node colours")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        notes.append(
            f"{len(foreign)} profiled node(s) are not in the graph shown ({shown}): a profile of another graph?"
        )
    return {
        "kernels": rows,
        "nodes": by_node,
        "kernel_ms": total,
        "whole_ms": data.get("whole_ms"),
        "runs": data.get("runs"),
        "target": target,
        "notes": notes,
    }
