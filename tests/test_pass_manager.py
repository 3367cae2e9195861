"""The pass manager: pipelines, options, verify mode, failure isolation, IR dumps, reports."""

from __future__ import annotations

import gc
import json

import pytest
import torch
from torch import nn

import graphopt
from graphopt import presets
from graphopt.errors import InputError, PassError, UnknownPassError, VerificationError
from graphopt.pass_api import PassResult, on_node, register_pass, unregister_pass


class Net(nn.Module):
    """Linear -> Identity -> ReLU -> Linear: one no-op for a correct pass to remove."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.skip = nn.Identity()
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.relu(self.skip(self.fc1(x))))


def remove_identity(graph, *, keep: int = 0):
    """Drop nn.Identity calls (exact); ``keep`` leaves the first N in place."""
    gm = graph.module
    nodes = [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.Identity)]
    for node in nodes[keep:]:
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
    return PassResult(graph, changed=len(nodes) > keep, details={"removed": len(nodes) - keep})


def drop_relu(graph):
    """A wrong pass: deletes ReLUs, which changes the outputs."""
    gm = graph.module
    for node in [n for n in graph.compute_nodes() if graph.info(n).kind == "relu"]:
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
    return PassResult(graph, changed=True)


def explode_on_relu(graph):
    """Half-edits the graph, then fails on the ReLU node."""
    for node in graph.compute_nodes():
        with on_node(node):
            if graph.info(node).kind == "linear":
                node.target = "fc2"  # damage that must not leak to the caller's graph
            if graph.info(node).kind == "relu":
                raise ValueError("cannot handle this activation")
    return PassResult(graph, changed=True)


def needs_eval(graph):
    return PassResult(graph, changed=False)


def needs_calibration(graph, *, calibration_data):
    return PassResult(graph, changed=False, details={"batches": len(calibration_data)})


def returns_graph(graph):
    return graph


TEST_PASSES = {
    "t_remove_identity": (remove_identity, {}),
    "t_drop_relu": (drop_relu, {}),
    "t_explode_on_relu": (explode_on_relu, {}),
    "t_needs_eval": (needs_eval, {"requires": ("eval_mode",)}),
    "t_needs_calibration": (needs_calibration, {"requires": ("calibration_data",)}),
    "t_returns_graph": (returns_graph, {}),
}


@pytest.fixture(autouse=True)
def test_passes():
    for name, (function, extra) in TEST_PASSES.items():
        register_pass(name, **extra)(function)
    yield
    for name in TEST_PASSES:
        unregister_pass(name)


@pytest.fixture
def graph():
    torch.manual_seed(0)
    return graphopt.capture(Net().eval(), torch.randn(3, 8))


def test_a_pipeline_runs_in_order_and_reports_each_pass(graph):
    optimized, report = graphopt.optimize(graph, "t_remove_identity, t_needs_eval")
    assert [p.name for p in report.passes] == ["t_remove_identity", "t_needs_eval"]
    first, second = report.passes
    assert first.changed and first.details == {"removed": 1}
    assert (first.before.nodes, first.after.nodes) == (4, 3)
    assert not second.changed and second.before == second.after
    assert report.initial.nodes == 4 and report.final.nodes == 3
    assert "skip" not in optimized.text() and "skip" in graph.text()
    x = torch.randn(5, 8)
    assert torch.equal(optimized(x), graph(x))
    as_dict = json.loads(report.to_json())
    assert as_dict["passes"][0]["details"] == {"removed": 1} and as_dict["final"]["nodes"] == 3


def test_pipelines_may_be_lists_of_names_or_plain_functions(graph):
    _, by_name = graphopt.optimize(graph, ["t_remove_identity"])
    _, by_function = graphopt.optimize(graph, [remove_identity])
    assert by_name.passes[0].after == by_function.passes[0].after
    assert by_function.passes[0].name == "remove_identity"


def test_options_reach_the_pass_and_are_validated(graph):
    kept, _ = graphopt.optimize(graph, "t_remove_identity", options={"t_remove_identity": {"keep": 1}})
    assert "skip" in kept.text()
    with pytest.raises(
        InputError, match=r"pass 't_remove_identity' has no option 'keep_all' \(did you mean 'keep'\?\)"
    ):
        graphopt.optimize(graph, "t_remove_identity", options={"t_remove_identity": {"keep_all": True}})
    with pytest.raises(InputError, match="options given for pass 't_drop_relu', which is not in the pipeline"):
        graphopt.optimize(graph, "t_remove_identity", options={"t_drop_relu": {}})


def test_unknown_pass_lists_the_registered_ones(graph):
    with pytest.raises(UnknownPassError) as caught:
        graphopt.optimize(graph, "t_remove_identity,no_such_pass")
    message = str(caught.value)
    assert "unknown pass 'no_such_pass'" in message
    assert all(name in message for name in TEST_PASSES)
    assert isinstance(caught.value, InputError)


def test_verify_names_the_first_pass_that_changes_the_outputs(graph):
    graphopt.optimize(graph, "t_remove_identity", verify=True)  # exact: passes
    optimized, _ = graphopt.optimize(graph, "t_drop_relu")  # unverified: the wrong pass goes through
    assert "relu" not in optimized.text()
    with pytest.raises(VerificationError) as caught:
        graphopt.optimize(graph, "t_remove_identity,t_drop_relu", verify=True)
    assert caught.value.pass_name == "t_drop_relu"
    assert "verification failed after pass 't_drop_relu'" in str(caught.value)


def test_verify_records_each_pass_error_and_honours_a_declared_tolerance(graph):
    _, report = graphopt.optimize(graph, "t_remove_identity", verify=True)
    assert report.passes[0].max_error == 0.0
    unregister_pass("t_drop_relu")
    register_pass("t_drop_relu", tolerance=float("inf"))(drop_relu)
    _, report = graphopt.optimize(graph, "t_drop_relu", verify=True)
    assert report.passes[0].max_error > 0


def test_a_failing_pass_leaves_the_input_untouched_and_names_pass_and_node(graph):
    text, code = graph.text(), graph.module.code
    with pytest.raises(PassError) as caught:
        graphopt.optimize(graph, "t_remove_identity,t_explode_on_relu")
    error = caught.value
    assert error.pass_name == "t_explode_on_relu"
    assert error.node == "relu" and error.op == "ReLU"
    assert error.source == f"{__file__}:{Net.forward.__code__.co_firstlineno + 1}"
    assert "ValueError: cannot handle this activation" in str(error)
    assert graph.text() == text and graph.module.code == code
    x = torch.randn(2, 8)
    assert torch.equal(graph(x), graph.module(x))
    assert graph.node("fc1").target == "fc1"


def test_a_pass_must_return_a_pass_result(graph):
    with pytest.raises(PassError, match="returned Graph, expected a PassResult"):
        graphopt.optimize(graph, "t_returns_graph")


def test_eval_mode_requirement(graph):
    training = graphopt.capture(Net().train(), torch.randn(3, 8))
    with pytest.raises(PassError, match="training mode"):
        graphopt.optimize(training, "t_needs_eval")
    graphopt.optimize(graph, "t_needs_eval")


def test_context_is_passed_when_given_and_presets_skip_passes_lacking_it(graph, monkeypatch):
    with pytest.raises(InputError, match="needs calibration_data"):
        graphopt.optimize(graph, "t_needs_calibration")
    _, report = graphopt.optimize(graph, "t_needs_calibration", calibration_data=[torch.randn(3, 8)] * 2)
    assert report.passes[0].details == {"batches": 2}
    monkeypatch.setitem(presets.PRESETS, "OT", ["t_remove_identity", "t_needs_calibration"])
    _, report = graphopt.optimize(graph, "OT")
    assert [p.name for p in report.passes] == ["t_remove_identity"]


def test_dump_dir_gets_the_captured_graph_and_one_file_per_pass(graph, tmp_path):
    optimized, _ = graphopt.optimize(graph, "t_remove_identity,t_needs_eval", dump_dir=tmp_path / "ir")
    files = sorted(p.name for p in (tmp_path / "ir").iterdir())
    assert files == ["00_captured.txt", "01_t_remove_identity.txt", "02_t_needs_eval.txt"]
    assert (tmp_path / "ir" / "00_captured.txt").read_text().startswith(graph.text(types=True))
    assert (tmp_path / "ir" / "02_t_needs_eval.txt").read_text().startswith(optimized.text(types=True))
    assert "skip" not in (tmp_path / "ir" / "01_t_remove_identity.txt").read_text()


def test_instruments_see_every_pass(graph):
    seen = []

    class Recorder:
        def before_pass(self, info, graph):
            seen.append(("before", info.name, graph.stats().nodes))

        def after_pass(self, info, graph, record):
            seen.append(("after", info.name, record.after.nodes))

    graphopt.optimize(graph, "t_remove_identity,t_needs_eval", instruments=[Recorder()])
    assert seen == [
        ("before", "t_remove_identity", 4),
        ("after", "t_remove_identity", 3),
        ("before", "t_needs_eval", 3),
        ("after", "t_needs_eval", 3),
    ]


def test_report_table_renders_every_pass(graph):
    from rich.console import Console

    _, report = graphopt.optimize(graph, "t_remove_identity")
    console = Console(width=150, record=True)
    console.print(report.table())
    text = console.export_text()
    assert "t_remove_identity" in text and "removed=1" in text and "4 -> 3" in text


def test_replaced_graphs_are_freed_after_each_pass_not_kept_with_their_weights() -> None:
    """Each pass works on a copy of the weights; the copies of earlier passes must not pile up (a
    ViT-B/16 once held 6.7 GB, 19 copies of its 0.35 GB of weights, at the end of O2)."""
    model = nn.Sequential(nn.Linear(41, 37), nn.ReLU(), nn.Linear(37, 5)).eval()
    graph = graphopt.capture(model, torch.randn(2, 41))

    def weight_copies() -> int:  # live or awaiting the collector: tensors of fc1's weight, either way round
        # only concrete shapes: other tests leave fake tensors of symbolic shapes, whose SymInts do not hash
        shapes = (tuple(o.shape) for o in gc.get_objects() if isinstance(o, torch.Tensor))
        return sum(1 for s in shapes if all(type(d) is int for d in s) and s in {(37, 41), (41, 37)})

    before = weight_copies()  # the model's and the captured graph's
    counts = []

    class CountCopies:
        def after_pass(self, info, graph, record) -> None:
            counts.append(weight_copies())

    graphopt.optimize(graph, "O2", instruments=[CountCopies()])
    assert len(counts) >= 10
    assert max(counts) <= before + 1  # and the current graph's; nothing of the passes before it
