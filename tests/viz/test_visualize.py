"""visualize() writes one self-contained HTML page, DOT or SVG; with passes, a before/after pipeline."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import torch

import graphopt
from graphopt.errors import GraphoptError, InputError
from graphopt.ir import FUSION_GROUP
from graphopt.pass_api import PassResult
from graphopt.visualize import pipeline_payload, render_dot
from tests.viz.models import TinyNet, tiny_graph


def embedded_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="graphopt-data">(.*?)</script>', html, re.S)
    assert match, "the page embeds its data"
    return json.loads(match.group(1))


def drop_dropout(graph):
    """A test pass: bypass and erase Dropout nodes."""
    removed = 0
    for node in list(graph.nodes):
        if graph.info(node).kind == "dropout":
            node.replace_all_uses_with(node.args[0])
            graph.module.graph.erase_node(node)
            removed += 1
    return PassResult(graph, changed=removed > 0, details={"removed": removed})


def do_nothing(graph):
    """A test pass that leaves the graph as it is."""
    return PassResult(graph, changed=False)


def mark_convs(graph):
    """A test pass: put every conv in its own fusion group."""
    for index, node in enumerate(n for n in graph.nodes if graph.info(n).kind == "conv2d"):
        node.meta[FUSION_GROUP] = f"group_{index}"
    return PassResult(graph, changed=True)


def test_html_is_self_contained(tmp_path):
    path = graphopt.visualize(tiny_graph(), tmp_path / "graph.html")
    html = path.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import|url\(", html), "nothing is loaded from outside"
    assert not re.search(r"https?://", html), "no network address anywhere in the page"
    assert html.count("<script") == 2  # the data and the inlined code
    data = embedded_data(html)
    assert data["title"] == "TinyNet"
    assert [s["label"] for s in data["states"]] == ["captured"] and data["passes"] == []
    assert {"conv2d", "batch_norm", "relu", "add", "linear"} <= {n["kind"] for n in data["states"][0]["graph"]["nodes"]}


def test_script_text_cannot_close_the_page_early(tmp_path):
    graph = tiny_graph()
    graph.name = "</script><b>x"
    html = graphopt.visualize(graph, tmp_path / "g.html").read_text()
    assert "</script><b>x" not in html
    assert embedded_data(html)["title"] == "</script><b>x"


def test_a_model_is_captured_with_example_inputs(tmp_path):
    path = graphopt.visualize(TinyNet().eval(), tmp_path / "m.html", example_inputs=torch.randn(1, 1, 8, 8))
    assert embedded_data(path.read_text())["states"][0]["graph"]["stats"]["nodes"] > 5
    with pytest.raises(InputError, match="example_inputs"):
        graphopt.visualize(TinyNet().eval(), tmp_path / "m.html")


def test_format_comes_from_the_suffix_or_the_argument(tmp_path):
    graph = tiny_graph()
    assert graphopt.visualize(graph, tmp_path / "g.dot").read_text().startswith('digraph "TinyNet"')
    assert graphopt.visualize(graph, tmp_path / "g.txt", format="dot").read_text().startswith("digraph")
    with pytest.raises(InputError, match=r"\.html, \.dot or \.svg"):
        graphopt.visualize(graph, tmp_path / "g.png")


def test_module_import_does_not_shadow_the_function(tmp_path):
    import graphopt.visualize as module

    assert callable(graphopt.visualize) and callable(module)
    assert graphopt.visualize(tiny_graph(), tmp_path / "g.dot").exists()


def test_dot_has_one_node_per_op_clusters_per_module_and_every_edge():
    graph = tiny_graph()
    dot = render_dot(pipeline_payload(graph)["states"][0]["graph"])
    ops = [n for n in graph.nodes if n.op != "get_attr"]
    assert len(re.findall(r"^\s*n\d+ \[label=", dot, re.M)) == len(ops)
    assert 'subgraph "cluster_blocks"' in dot and 'subgraph "cluster_blocks.0"' in dot
    assert 'label="blocks.0 (Block)"' in dot
    edges = sum(len(n.all_input_nodes) for n in ops)
    assert len(re.findall(r"^\s*n\d+ -> n\d+;", dot, re.M)) == edges
    assert 'label="conv2d\\nblocks_0_conv\\n1×4×8×8"' in dot


def test_svg_export_uses_graphviz(tmp_path):
    if shutil.which("dot") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Graphviz `dot` is missing in CI: scripts/setup_browser.sh installs it")
        pytest.skip("Graphviz `dot` is not installed (scripts/setup_browser.sh installs it)")
    svg = graphopt.visualize(tiny_graph(), tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "blocks_0_conv" in svg and "blocks.0 (Block)" in svg


def test_svg_without_graphviz_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(GraphoptError, match="Graphviz"):
        graphopt.visualize(tiny_graph(), tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def test_pipeline_records_each_pass_with_its_report_and_diff(tmp_path):
    path = graphopt.visualize(tiny_graph(), tmp_path / "p.html", passes=[drop_dropout, mark_convs])
    data = embedded_data(path.read_text())
    assert [s["label"] for s in data["states"]] == ["captured", "after drop_dropout", "after mark_convs"]
    assert data["initial"] == 2
    first, second = data["passes"]
    assert first["record"]["name"] == "drop_dropout" and first["record"]["details"] == {"removed": 1}
    assert first["diff"]["removed"] == ["drop"] and first["diff"]["changed"] == []
    assert sorted(second["diff"]["fused"]) == ["blocks_0_conv", "blocks_1_conv", "stem"]
    before, after = (data["states"][i]["graph"]["stats"]["nodes"] for i in (0, 1))
    assert after == before - 1


def test_dot_of_a_pipeline_shows_the_final_graph(tmp_path):
    dot = graphopt.visualize(tiny_graph(), tmp_path / "p.dot", passes=[drop_dropout]).read_text()
    assert "blocks_0_conv" in dot and "\\ndrop\\n" not in dot


def test_non_finite_numbers_from_a_pass_do_not_break_the_page(tmp_path):
    def report_nan(graph):
        graph.node("fc").meta["qparams"] = {"scale": float("inf")}
        return PassResult(graph, changed=True, details={"ratio": float("nan")})

    html = graphopt.visualize(tiny_graph(), tmp_path / "nan.html", passes=[report_nan]).read_text()
    data = embedded_data(html)  # strict JSON: json.loads would accept NaN, so look for the token too
    assert "NaN" not in html.split('id="graphopt-data">')[1].split("</script>")[0]
    assert data["passes"][0]["record"]["details"] == {"ratio": "nan"}
    fc = next(n for n in data["states"][1]["graph"]["nodes"] if n["name"] == "fc")
    assert fc["quant"] == {"qparams": {"scale": "inf"}}


def test_a_pass_that_changes_nothing_does_not_store_the_graph_again(tmp_path):
    data = embedded_data(graphopt.visualize(tiny_graph(), tmp_path / "p.html", passes=[do_nothing]).read_text())
    assert data["states"][1] == {"label": "after do_nothing", "same_as": 0}
    assert data["passes"][0]["diff"] == {"removed": [], "added": [], "folded": [], "changed": [], "fused": []}
