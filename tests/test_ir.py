"""Graph.to_networkx: the IR as a networkx DiGraph whose nodes, edges and order are the fx graph's."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

import graphopt


@pytest.fixture(scope="module")
def captured():
    from samples.resnet import resnet_small

    return graphopt.capture(resnet_small(), torch.randn(1, 3, 32, 32))


@pytest.fixture(scope="module", params=["captured", "O2"])
def graph(request, captured):
    """resnet_small as captured, and after O2 (which adds get_attr constants and a matmul)."""
    return captured if request.param == "captured" else graphopt.optimize(captured, "O2")[0]


def test_nodes_edges_and_order_match_the_fx_graph(graph):
    nodes = list(graph.module.graph.nodes)
    names = [node.name for node in nodes]
    digraph = graph.to_networkx()
    assert isinstance(digraph, nx.DiGraph) and nx.is_directed_acyclic_graph(digraph)
    assert sorted(digraph.nodes) == sorted(names)  # iterated in insertion order: an edge can add a user early
    # One edge per (input, consumer) pair: a node's predecessors are exactly its inputs.
    assert set(digraph.edges) == {(source.name, node.name) for node in nodes for source in node.all_input_nodes}
    for node in nodes:
        assert set(digraph.predecessors(node.name)) == {source.name for source in node.all_input_nodes}
        assert set(digraph.successors(node.name)) == {user.name for user in node.users}
        facts = digraph.nodes[node.name]
        assert (facts["op"], facts["kind"], facts["flops"]) == (node.op, graph.info(node).kind, graph.info(node).flops)
    # The fx order is a topological order, and the one networkx picks when ties go to the earlier node.
    position = {name: index for index, name in enumerate(names)}
    assert all(position[u] < position[v] for u, v in digraph.edges)
    order = list(nx.topological_sort(digraph))
    assert sorted(order) == sorted(names)
    assert all(order.index(u) < order.index(v) for u, v in digraph.edges)
    assert list(nx.lexicographical_topological_sort(digraph, key=position.__getitem__)) == names
    # Nothing is dead: every node leads to the output.
    assert all(nx.has_path(digraph, name, "output") for name in names)


def test_dominators_show_the_residual_blocks(captured):
    """Each residual add joins two branches, so the block's input (not either branch) dominates it."""
    digraph = captured.to_networkx()
    dominators = nx.immediate_dominators(digraph, "x")
    assert {name: dominators[name] for name in digraph if name.startswith("add")} == {
        "add": "stem_2",
        "add_1": "layers_0_relu2",
        "add_2": "layers_1_relu2",
        "add_3": "layers_2_relu2",
    }
    assert dominators["layers_1_bn2"] == "layers_1_conv2"  # inside a branch the chain dominates
    assert nx.has_path(digraph, "layers_1_downsample_0", "add_1")
    assert not nx.has_path(digraph, "layers_1_downsample_0", "layers_1_conv2")  # the shortcut skips the branch
