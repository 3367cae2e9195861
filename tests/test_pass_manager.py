"""The pass manager: pipelines, options, verify mode, failure isolation, IR dumps, reports."""

from __future__ import annotations

import gc
import json
import weakref

import pytest
import torch
from torch import nn

import graphopt
from graphopt import ir, presets
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
    weights: list[weakref.ref] = []  # the first weight of each pass's graph
    still_alive = []

    class WatchCopies:
        def after_pass(self, info, graph, record) -> None:
            weights.append(weakref.ref(next(iter(graph.module.state_dict().values()))))
            still_alive.append(sum(ref() is not None for ref in weights[:-1]))

    graphopt.optimize(graph, "O2", instruments=[WatchCopies()])
    assert len(still_alive) >= 10
    assert still_alive == [0] * len(still_alive)  # only the current graph's copy: none of the passes before it
    assert gc.get_freeze_count() == 0  # the collector sees the whole heap again


def test_a_pass_that_changes_nothing_annotate_reads_does_not_run_the_model_again(graph, monkeypatch):
    """Re-annotating runs the whole model in PyTorch; the cleanup passes of a preset mostly find nothing
    to do (and marking fusion groups only adds node metadata), so their copy keeps its annotations."""
    runs = []
    real_annotate = ir.annotate
    monkeypatch.setattr(ir, "annotate", lambda module, inputs: runs.append(1) or real_annotate(module, inputs))
    optimized, _ = graphopt.optimize(graph, "eliminate_dead_code, eliminate_common_subexpressions, mark_fusion_groups")
    assert runs == []
    assert [optimized.info(n).shape for n in optimized.compute_nodes()] == [(3, 16), (3, 16), (3, 16), (3, 4)]
    optimized, _ = graphopt.optimize(graph, "t_remove_identity")
    assert runs == [1]  # an edit re-annotates
    assert [optimized.info(n).kind for n in optimized.compute_nodes()] == ["linear", "relu", "linear"]


def widen_fc2_silently(graph):
    """Replaces a layer with a wider one and claims to have changed nothing."""
    graph.module.fc2 = nn.Linear(16, 6)
    return PassResult(graph, changed=False)


def swap_relu_for_tanh_silently(graph):
    graph.module.relu = nn.Tanh()
    return PassResult(graph, changed=False)


def drop_identity_without_recompiling(graph):
    node = next(n for n in graph.compute_nodes() if n.target == "skip")
    node.replace_all_uses_with(node.args[0])
    graph.module.graph.erase_node(node)
    return PassResult(graph, changed=False)


@pytest.mark.parametrize("edit", [widen_fc2_silently, swap_relu_for_tanh_silently, drop_identity_without_recompiling])
def test_an_edit_re_annotates_even_when_the_pass_says_it_changed_nothing(graph, edit):
    optimized, _ = graphopt.optimize(graph, [edit])
    facts = [(optimized.info(n).kind, optimized.info(n).shape) for n in optimized.compute_nodes()]
    expected = [("linear", (3, 16)), ("identity", (3, 16)), ("relu", (3, 16)), ("linear", (3, 4))]
    if edit is widen_fc2_silently:
        expected[3] = ("linear", (3, 6))
    if edit is swap_relu_for_tanh_silently:
        expected[2] = ("tanh", (3, 16))
    if edit is drop_identity_without_recompiling:
        del expected[1]
        assert "skip" not in optimized.module.code  # recompiled
    assert facts == expected
    torch.testing.assert_close(optimized(*graph.example_inputs), optimized.module(*graph.example_inputs))
