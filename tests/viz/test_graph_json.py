"""graph_to_json describes every node with the facts the explorer shows; diff_graphs says what a pass did."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from graphopt.graph_json import diff_graphs, graph_to_json, kind_category
from graphopt.ir import FUSION_GROUP, FUSION_PATTERN
from tests.viz.models import tiny_graph


def by_name(data):
    return {node["name"]: node for node in data["nodes"]}


def test_nodes_carry_shapes_params_flops_source_and_scope():
    graph = tiny_graph()
    data = graph_to_json(graph)
    json.dumps(data)  # plain JSON, nothing else
    nodes = by_name(data)

    conv = nodes["blocks_0_conv"]
    assert conv["kind"] == "conv2d" and conv["category"] == "conv"
    assert conv["shapes"] == [[1, 4, 8, 8]] and conv["dtypes"] == ["float32"]
    assert conv["scope"] == "blocks.0" and conv["module"] == "blocks.0.conv"
    assert {p["name"]: p["shape"] for p in conv["params"]} == {"weight": [4, 4, 3, 3], "bias": [4]}
    assert sum(p["bytes"] for p in conv["params"]) == conv["param_bytes"] == (4 * 4 * 9 + 4) * 4
    assert conv["flops"] == 2 * (4 * 8 * 8) * (4 * 9)
    assert conv["attrs"].startswith("Conv2d(4, 4, kernel_size=(3, 3)")
    assert conv["source"].endswith("models.py:" + str(_line_of("self.bn(self.conv(x))")))
    assert "self.conv(x)" in conv["code"]

    add = nodes["add"]
    assert add["scope"] == "blocks.0" and add["category"] == "arithmetic"
    assert data["modules"]["blocks.0"] == "Block" and data["modules"]["blocks"] == "Sequential"


def test_edges_follow_the_fx_graph():
    graph = tiny_graph()
    data = graph_to_json(graph)
    names = [node["name"] for node in data["nodes"]]
    edges = {(names[a], names[b]) for a, b in data["edges"]}
    expected = {(source.name, node.name) for node in graph.nodes for source in node.all_input_nodes}
    assert edges == expected
    assert ("blocks_0_bn", "add") in edges and ("stem", "add") in edges  # the residual


def test_fusion_groups_and_quantization_params_are_read_from_node_meta():
    graph = tiny_graph()
    graph.node("blocks_0_conv").meta[FUSION_GROUP] = "g0"
    graph.node("blocks_0_conv").meta[FUSION_PATTERN] = "conv2d+relu"
    graph.node("fc").meta["qparams"] = {"scale": torch.tensor(0.5), "zero_point": 3, "dtype": torch.qint8}
    nodes = by_name(graph_to_json(graph))
    assert nodes["blocks_0_conv"]["fusion_group"] == "g0"
    assert nodes["blocks_0_conv"]["fusion_pattern"] == "conv2d+relu"
    assert nodes["fc"]["quant"] == {"qparams": {"scale": 0.5, "zero_point": 3, "dtype": "qint8"}}
    assert nodes["fc"]["quantized"] and not nodes["blocks_0_conv"]["quantized"]


def test_kind_categories():
    assert [kind_category(k) for k in ("conv2d", "linear", "relu", "add", "reshape", "quantize_per_tensor")] == [
        "conv",
        "linear",
        "activation",
        "arithmetic",
        "shape",
        "quantize",
    ]


def test_diff_names_removed_fused_and_really_changed_nodes():
    before_graph = tiny_graph()
    before = graph_to_json(before_graph)
    after_graph = before_graph.copy()
    dropout = after_graph.node("drop")
    dropout.replace_all_uses_with(dropout.args[0])
    after_graph.module.graph.erase_node(dropout)
    after_graph.node("blocks_1_conv").meta[FUSION_GROUP] = "g1"
    after_graph.refresh()
    diff = diff_graphs(before, graph_to_json(after_graph))
    assert diff["removed"] == ["drop"]
    assert diff["added"] == [] and diff["folded"] == []
    assert diff["fused"] == ["blocks_1_conv"]
    assert diff["changed"] == []  # `mean` now reads relu_1 instead of drop: rewired, not changed


def _line_of(text: str) -> int:
    from tests.viz import models

    lines = Path(models.__file__).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_quantized_graph_shows_scales_and_marks_int8_ops():
    import graphopt

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    calibration = torch.randn(32, 8)
    int8_graph, _ = graphopt.quantize(graphopt.capture(model, calibration[:1]), calibration)
    nodes = graph_to_json(int8_graph)["nodes"]
    quantize = next(n for n in nodes if n["kind"] == "quantize")
    assert set(quantize["quant"]) >= {"scale", "zero_point"} and quantize["quant"]["scale"] > 0
    assert "int8" in quantize["dtypes"]
    linears = [n for n in nodes if n["kind"] == "linear"]
    assert linears and all(n["quantized"] for n in linears)  # they read dequantized values: int8 ops
    assert not next(n for n in nodes if n["kind"] == "relu")["quantized"]  # reads the float linear output
