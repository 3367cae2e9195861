"""Where the time goes, in the viewer: each compiled kernel mapped back to the graph nodes it computes,
timed, and the nodes coloured by their kernels' share of the run.

The map is checked on small conv/linear models compiled for the cpu target (every compute node in
exactly one kernel; a conv and its ReLU in the same one; two identical layers sharing one kernel
both listed), then the page: the profile data, the CLI, and the colours in a real browser.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import graphopt
from graphopt.cli import main
from graphopt.profile_view import profile_overlay
from graphopt.targets.runtime.profile import RUNTIME_ROW
from tests.viz.browsing import box, open_page

X = torch.randn(1, 3, 16, 16)


def _conv_linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),  # the same shapes twice: TVM shares one kernel between them
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10),
    ).eval()


def page_data(path):
    return json.loads(re.search(r'id="graphopt-data">(.*?)</script>', path.read_text(), re.S).group(1))


@pytest.fixture(scope="module")
def compiled():
    """The optimized graph, and it compiled as is (no passes again, so the node names are the graph's)."""
    graph, _ = graphopt.optimize(graphopt.capture(_conv_linear(), X), "O2")
    return graph, graphopt.compile(graph, X, target="cpu", passes="O0")


@pytest.fixture(scope="module")
def profile(compiled):
    return compiled[1].profile(X.numpy(), runs=2)


def compute_nodes(graph) -> list[str]:
    return [n.name for n in graph.module.graph.nodes if n.op in ("call_module", "call_function", "call_method")]


def union(calls) -> list[str]:
    return list(dict.fromkeys(n for call in calls for n in call))


def test_every_compute_node_is_in_exactly_one_kernel(compiled) -> None:
    graph, model = compiled
    kernel_nodes = {kernel: union(calls) for kernel, calls in model.manifest.kernel_nodes.items()}
    for name in compute_nodes(graph):
        owners = [kernel for kernel, nodes in kernel_nodes.items() if name in nodes]
        assert len(owners) == 1, f"{name} is computed by {owners or 'no kernel'}"
    listed = {n for nodes in kernel_nodes.values() for n in nodes}
    assert listed <= set(compute_nodes(graph))  # and no kernel names a node the graph lacks


def test_a_conv_and_its_relu_share_one_kernel_and_identical_layers_share_it_too(compiled) -> None:
    graph, model = compiled
    kernel_nodes = {kernel: union(calls) for kernel, calls in model.manifest.kernel_nodes.items()}
    convs = [n for n in graph.module.graph.nodes if n.op == "call_module" and n.target in ("0", "3", "5")]
    relus = [next(iter(conv.users)) for conv in convs]

    def kernel_of(name):
        return next(kernel for kernel, nodes in kernel_nodes.items() if name in nodes)

    for conv, relu in zip(convs, relus, strict=True):
        assert kernel_of(conv.name) == kernel_of(relu.name), f"{conv.name} and {relu.name} in different kernels"
    # layers 3 and 5 have the same shapes and weights' shapes: one kernel, called twice, computes both
    shared = kernel_of(convs[1].name)
    assert kernel_of(convs[2].name) == shared
    assert kernel_nodes[shared] == [convs[1].name, relus[1].name, convs[2].name, relus[2].name]
    # and each of its two calls computes one layer, in the order the VM runs them
    assert model.manifest.kernel_nodes[shared] == [[convs[1].name, relus[1].name], [convs[2].name, relus[2].name]]


def test_an_unfolded_batch_norm_is_in_its_convs_kernel() -> None:
    """At O0 (viz's default) TVM decomposes BatchNorm into a scale and shift fused into the conv
    kernel: the new bindings carry no tag of their own and take the batch norm's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)).eval()
    graph = graphopt.capture(model, X)
    kernel_nodes = graphopt.compile(graph, X, target="cpu", passes="O0").manifest.kernel_nodes
    calls = [call for kernel_calls in kernel_nodes.values() for call in kernel_calls if call]
    assert sorted(calls) == [["_0", "_1"], ["_2"]]


class _MaxOverTime(nn.Module):
    """A text-CNN head: ``max`` returns values and indices; the unused indices' kernel is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).max(dim=2)[0])


def test_a_kernel_dropped_during_fusion_leaves_the_others_mapped() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 4, 12)
    graph = graphopt.capture(_MaxOverTime().eval(), x)
    kernel_nodes = graphopt.compile(graph, x, target="cpu", passes="O0").manifest.kernel_nodes
    mapped = {n for calls in kernel_nodes.values() for call in calls for n in call}
    tensor_ops = set(compute_nodes(graph))
    assert tensor_ops - mapped <= {"getitem"}  # the item of max's (values, indices): no computation


class _TwoGelus(nn.Module):
    """Two identical layers whose tanh-GELU reads its input three times (GPT-2's ``gelu_new``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

    @staticmethod
    def gelu(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(0.79788456 * (x + 0.044715 * torch.pow(x, 3.0))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gelu(self.fc2(self.gelu(self.fc1(x))))


def test_identical_layers_whose_ops_read_a_value_twice_are_each_mapped() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8)
    graph = graphopt.capture(_TwoGelus().eval(), x)
    kernel_nodes = graphopt.compile(graph, x, target="cpu", passes="O0").manifest.kernel_nodes
    mapped = [n for calls in kernel_nodes.values() for call in calls for n in call]
    assert sorted(mapped) == sorted(compute_nodes(graph))  # each node once, the second layer's too


def test_the_profile_names_each_kernels_nodes_and_the_shares_add_up(compiled, profile) -> None:
    graph, model = compiled
    overlay = profile_overlay(profile, (n.name for n in graph.module.graph.nodes))
    assert sum(k["share"] for k in overlay["kernels"]) == pytest.approx(1.0, abs=1e-9)
    assert overlay["kernel_ms"] == pytest.approx(profile.kernel_ms)
    assert [k["ms"] for k in overlay["kernels"]] == sorted((k["ms"] for k in overlay["kernels"]), reverse=True)
    runtime = next(k for k in overlay["kernels"] if k["name"] == RUNTIME_ROW)
    assert runtime["nodes"] == []  # the VM's own calls are listed, computing no node
    shared = next(i for i, k in enumerate(overlay["kernels"]) if len(k["nodes"]) == 4)
    assert overlay["kernels"][shared]["calls"] == 2 and overlay["kernels"][shared]["gflops"] > 0
    # each timed node points back at the kernel rows that compute it; a shared kernel half to each layer
    for name, parts in overlay["nodes"].items():
        assert all(name in overlay["kernels"][p["kernel"]]["nodes"] for p in parts)
        assert [p["part"] for p in parts] == ([0.5] if parts[0]["kernel"] == shared else [1.0])
    # every compute node was timed but the flatten, which reads the NHWC activation in place
    # (targets/cpu/flatten_weights.py): its reshape is a view, no kernel runs for it
    called = {k["name"] for k in overlay["kernels"]}
    views = {
        n for kernel, calls in model.manifest.kernel_nodes.items() if kernel not in called for c in calls for n in c
    }
    assert views == {"_7"}
    assert set(overlay["nodes"]) == set(compute_nodes(graph)) - views
    assert all("another graph" not in note for note in overlay["notes"])


def test_a_profile_of_another_graph_says_so(profile) -> None:
    overlay = profile_overlay(profile, ["x", "output"])
    assert overlay["nodes"] == {}
    assert any("not in the graph shown" in note for note in overlay["notes"])


def test_cli_viz_profile_writes_the_time_mode(tmp_path, capsys) -> None:
    out = tmp_path / "cnn.html"
    args = ["viz", "samples/cnn.py:digits_cnn", "--input-shape", "1x1x28x28", "--passes", "O2"]
    assert main([*args, "--profile", "--runs", "2", "-o", str(out)]) == 0
    assert "kernels timed" in capsys.readouterr().out
    data = page_data(out)
    profile = data["profile"]
    final = {n["name"] for n in data["states"][-1]["graph"]["nodes"]}
    assert profile["target"] == "cpu" and profile["kernels"]
    assert set(profile["nodes"]) <= final and {"conv1", "relu1", "conv2", "relu2"} <= set(profile["nodes"])
    conv1 = profile["kernels"][profile["nodes"]["conv1"][0]["kernel"]]
    assert "relu1" in conv1["nodes"] and "conv2d" in conv1["name"]
    assert len(data["states"]) == len(data["passes"]) + 1  # the pipeline view is as before
    assert main([*args, "--profile", "-o", str(tmp_path / "cnn.dot")]) == 2
    assert "need an .html output" in capsys.readouterr().err


@pytest.mark.browser
def test_nodes_are_coloured_by_measured_time_in_the_browser(browser, tmp_path, compiled, profile) -> None:
    graph, _ = compiled
    path = graphopt.visualize(graph, tmp_path / "time.html", profile=profile)
    overlay = page_data(path)["profile"]
    open_page(browser, path)
    browser.execute_script("window.__graphopt.expandAll()")
    assert browser.find_element("id", "color-mode").get_attribute("value") == "time"  # the page opens in it
    shares = {
        name: sum(overlay["kernels"][p["kernel"]]["share"] * p["part"] for p in parts)
        for name, parts in overlay["nodes"].items()
    }
    slowest = max(shares, key=shares.get)
    assert box(browser, slowest)["stroke"] == "hsl(0, 85%, 40%)"  # the largest share: deep red
    assert box(browser, graph.input_nodes()[0].name)["stroke"] == "#cbd5e1"  # the input: no kernel
    fastest = min(shares, key=shares.get)
    assert box(browser, fastest)["stroke"] != box(browser, slowest)["stroke"]
    assert "slowest:" in browser.find_element("id", "legend").text

    browser.execute_script("window.__graphopt.reveal(arguments[0])", slowest)
    details = browser.find_element("id", "details").text
    kernel = overlay["kernels"][overlay["nodes"][slowest][0]["kernel"]]
    assert "Measured time" in details and kernel["name"] in details and "GFLOP/s" in details

    table = browser.find_element("id", "kernels")
    rows = table.find_elements("css selector", "tr[data-kernel]")
    assert len(rows) == len(overlay["kernels"])
    assert int(rows[0].get_attribute("data-kernel")) == 0  # slowest first
    assert table.find_elements("css selector", "tr.unmapped")  # the VM's own calls, listed apart
    browser.execute_script("window.__graphopt.sortKernels('ms', false)")
    rows = browser.find_element("id", "kernels").find_elements("css selector", "tr[data-kernel]")
    assert int(rows[0].get_attribute("data-kernel")) == len(overlay["kernels"]) - 1  # fastest first now
