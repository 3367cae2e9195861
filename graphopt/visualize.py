"""Write a graph as something a person can explore: one self-contained HTML page, DOT or SVG.

The HTML page embeds its data (``graph_json``) and all of its scripts and styles
(``graphopt/viz_assets``), so it opens from ``file://`` with no network. Given ``passes``, the
pipeline runs with an instrument that snapshots the graph after every pass, and the page shows a
timeline of passes with their reports and what each one removed, added, folded or fused.

>>> graphopt.visualize(graph, "graph.html")
>>> graphopt.visualize(model.eval(), "pipeline.html", example_inputs=torch.randn(1, 784), passes="O2")
>>> graphopt.visualize(graph, "graph.svg")   # Graphviz `dot` renders the DOT export
>>> graphopt.visualize(graph, "prune.html", pruning=True, sensitivity=report)  # groups, sensitivity colours
>>> graphopt.visualize(graph, "time.html", profile=graphopt.compile(graph, x, passes="O0").profile(x))  # time
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from graphopt.errors import GraphoptError, InputError
from graphopt.graph_json import PALETTE, diff_graphs, graph_to_json, jsonable
from graphopt.ir import Graph

FORMATS = ("html", "dot", "svg")
#: The page's scripts, in dependency order.
_SCRIPTS = ("format.js", "layout.js", "model.js", "scene.js", "render.js", "minimap.js", "details.js", "app.js")


class PipelineSnapshots:
    """A pass instrument that keeps the graph as JSON before the first pass and after each one."""

    def __init__(self) -> None:
        self.states: list[dict[str, Any]] = []
        self.passes: list[dict[str, Any]] = []

    def before_pass(self, info: Any, graph: Graph) -> None:
        if not self.states:
            self.states.append({"label": "captured", "graph": graph_to_json(graph)})

    def after_pass(self, info: Any, graph: Graph, record: Any) -> None:
        before = self.states[-1]["graph"]
        after = graph_to_json(graph)
        if after == before:
            after = before  # one object: the page stores a graph a pass left alone only once
        self.states.append({"label": f"after {info.name}", "graph": after})
        self.passes.append({"record": jsonable(record.to_dict()), "diff": diff_graphs(before, after)})


def visualize(
    graph_or_model: Any,
    path: str | Path,
    *,
    example_inputs: Any = None,
    passes: Any = None,
    format: str | None = None,
    pruning: bool = False,
    sensitivity: Any = None,
    profile: Any = None,
) -> Path:
    """Write ``graph_or_model`` to ``path`` as HTML, DOT or SVG (``format`` or the file suffix).

    A model (``nn.Module``) is captured first, which needs ``example_inputs``. With ``passes``
    (a preset like "O2", "a,b" or a list) the HTML shows the pipeline before and after each pass;
    DOT and SVG show the optimized graph. ``pruning=True`` adds the dependency groups of the
    captured graph to the HTML (pick one to highlight it across the graph); a ``sensitivity``
    report (``graphopt.sensitivity``) implies it and adds "colour by sensitivity". A ``profile``
    (``CompiledModel.profile``, a ``KernelProfile``) adds "colour by measured time" and the kernels
    table; its nodes are matched by name against the last graph shown, so compile the same graph
    with the same ``passes`` (``graphopt.compile(graph, x, passes="O0")`` when there are none; a
    profile naming nodes the page lacks says so in its notes). Returns the path.
    """
    graph = _as_graph(graph_or_model, example_inputs)
    groups = pruning_overlay(graph, sensitivity) if pruning or sensitivity is not None else None
    payload = pipeline_payload(graph, passes)
    if groups is not None:
        payload["pruning"] = groups
    if profile is not None:
        payload["profile"] = profile_overlay(payload, profile)
    return write(payload, path, format)


def profile_overlay(payload: dict[str, Any], profile: Any, *, target: str | None = None) -> dict[str, Any]:
    """``profile`` (a ``KernelProfile``) as the page's ``profile`` data, over the payload's last state."""
    from graphopt.profile_view import profile_overlay as overlay

    return overlay(profile, (node["name"] for node in payload["states"][-1]["graph"]["nodes"]), target=target)


def pruning_overlay(graph: Graph, sensitivity: Any = None) -> dict[str, Any]:
    """``graph``'s dependency groups (and their sensitivity, given a report), as the page's ``pruning`` data.

    Node names are those of ``graph`` as captured: after passes rename nodes, the later states
    highlight only the nodes that kept their names.
    """
    from graphopt.pruning.overlay import overlay

    return overlay(graph, sensitivity=sensitivity)


def write(payload: dict[str, Any], path: str | Path, format: str | None = None) -> Path:
    """Write a ``pipeline_payload`` as HTML (every state), or DOT/SVG (the last state)."""
    path = Path(path)
    chosen = output_format(path, format)
    if chosen == "html":
        text = render_html(payload)
    else:
        final = payload["states"][-1]["graph"]
        text = render_dot(final) if chosen == "dot" else render_svg(render_dot(final))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)  # a reader never sees half a page
    return path


def output_format(path: str | Path, format: str | None = None) -> str:
    """``format`` if given, else the file suffix: "html", "dot" or "svg"."""
    chosen = (format or Path(path).suffix.lstrip(".")).lower()
    if chosen not in FORMATS:
        raise InputError(f"cannot tell the output format of '{path}': use a .html, .dot or .svg file, or format=")
    return chosen


def _as_graph(graph_or_model: Any, example_inputs: Any) -> Graph:
    if isinstance(graph_or_model, Graph):
        return graph_or_model
    if example_inputs is None:
        raise InputError("visualize needs example_inputs to capture a model (or pass a captured graphopt.Graph)")
    from graphopt.capture import capture

    return capture(graph_or_model, example_inputs)


def pipeline_payload(graph: Graph, passes: Any = None, **optimize_options: Any) -> dict[str, Any]:
    """The page's data: graph states (captured, then after each pass) and per-pass reports and diffs.

    ``optimize_options`` go to ``graphopt.optimize`` (``verify=``, ``options=``, ``instruments=``...).
    """
    snapshots = PipelineSnapshots()
    if passes is not None:
        from graphopt.pass_manager import optimize

        instruments = [*optimize_options.pop("instruments", ()), snapshots]
        optimize(graph, passes, instruments=instruments, **optimize_options)
    if not snapshots.states:  # no passes, or an empty pipeline
        snapshots.before_pass(None, graph)
    return {
        "version": 1,
        "title": graph.name,
        "states": snapshots.states,
        "passes": snapshots.passes,
        "initial": len(snapshots.states) - 1,
    }


def render_html(payload: dict[str, Any]) -> str:
    """One HTML page with the payload and every script and style inline (works from file://)."""
    assets = resources.files("graphopt") / "viz_assets"
    scripts = "\n".join((assets / name).read_text(encoding="utf-8") for name in _SCRIPTS)
    data = json.dumps(_share_repeated_states(payload), separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    fills = {
        "TITLE": html.escape(payload["title"]),
        "CSS": (assets / "style.css").read_text(encoding="utf-8"),
        "JS": scripts.replace("</script", "<\\/script"),
        "DATA": data,
    }
    parts = re.split(r"@@(\w+)@@", (assets / "template.html").read_text(encoding="utf-8"))
    return "".join(fills[part] if index % 2 else part for index, part in enumerate(parts))


def _share_repeated_states(payload: dict[str, Any]) -> dict[str, Any]:
    """States whose graph is the same object as an earlier one become ``{"label", "same_as": index}``."""
    first: dict[int, int] = {}
    states = []
    for index, state in enumerate(payload["states"]):
        if "graph" not in state:  # already shared
            states.append(state)
            continue
        earlier = first.setdefault(id(state["graph"]), index)
        states.append(state if earlier == index else {"label": state["label"], "same_as": earlier})
    return {**payload, "states": states}


def render_dot(data: dict[str, Any]) -> str:
    """Graphviz DOT of one graph state: modules as nested clusters, ops coloured by kind.

    Constants (``get_attr`` weights) are left out; their shapes are in the HTML view's details.
    """
    nodes = [node for node in data["nodes"] if node["op"] != "get_attr"]
    kept = {node["id"] for node in nodes}
    tree: dict[str, Any] = {"nodes": [], "children": {}}
    for node in nodes:
        branch = tree
        for part in node["scope"].split(".") if node["scope"] else []:
            branch = branch["children"].setdefault(part, {"nodes": [], "children": {}})
        branch["nodes"].append(node)
    lines = [
        f"digraph {_quote(data['name'])} {{",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.25, ranksep=0.35];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, penwidth=1.2];',
        '  edge [color="#94a3b8", arrowsize=0.6];',
    ]
    _dot_cluster(tree, "", data["modules"], lines, indent="  ")
    lines += [f"  n{source} -> n{target};" for source, target in data["edges"] if source in kept and target in kept]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_cluster(branch: dict[str, Any], path: str, modules: dict[str, str], lines: list[str], indent: str) -> None:
    for node in branch["nodes"]:
        colour = PALETTE.get(node["category"], PALETTE["other"])
        shape = "×".join(str(d) for d in node["shapes"][0]) if node["shapes"] else ""
        kind = "input" if node["op"] == "placeholder" else node["kind"]
        label = "\n".join(part for part in (kind, node["name"] if node["name"] != kind else "", shape) if part)
        lines.append(f'{indent}n{node["id"]} [label={_quote(label)}, color="{colour}", fillcolor="{_tint(colour)}"];')
    for name, child in branch["children"].items():
        child_path = f"{path}.{name}" if path else name
        title = f"{child_path} ({modules[child_path]})" if child_path in modules else child_path
        lines.append(f"{indent}subgraph {_quote('cluster_' + child_path)} {{")
        lines.append(f'{indent}  label={_quote(title)}; style="rounded,filled"; color="#cbd5e1"; fillcolor="#f8fafc";')
        _dot_cluster(child, child_path, modules, lines, indent + "  ")
        lines.append(f"{indent}}}")


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tint(hex_colour: str, amount: float = 0.18) -> str:
    rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * (1 - amount)):02x}" for c in rgb)


def render_svg(dot_text: str) -> str:
    """SVG from DOT by Graphviz's ``dot`` (installed by scripts/setup_browser.sh)."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphoptError("SVG export needs Graphviz's `dot` (apt-get install graphviz); .html and .dot need nothing")
    result = subprocess.run([dot, "-Tsvg"], input=dot_text, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GraphoptError(f"Graphviz dot failed: {result.stderr.strip().splitlines()[-1] if result.stderr else ''}")
    return result.stdout
