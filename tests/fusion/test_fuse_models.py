"""graphopt.fuse_models: the fused graph against the eager combination of its members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import InputError


def _mlp(seed: int, outputs: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, outputs)).eval()


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
    )
    with torch.no_grad():  # BatchNorm with statistics of its own, so folding it is not a no-op
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def _eager(models: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([m(x) for m in models])


@pytest.fixture
def members() -> list[nn.Module]:
    return [_mlp(seed) for seed in range(3)]


X = torch.randn(6, 8, generator=torch.Generator().manual_seed(1))


def test_mean_stack_none_match_eager(members: list[nn.Module]) -> None:
    outputs = _eager(members, X)
    graph, report = graphopt.fuse_models(members, X, combine="mean")
    torch.testing.assert_close(graph(X), outputs.mean(0), rtol=0, atol=1e-5)
    graph, _ = graphopt.fuse_models(members, X, combine="stack")
    torch.testing.assert_close(graph(X), outputs, rtol=0, atol=1e-5)
    graph, _ = graphopt.fuse_models(members, X, combine="none")
    fused = graph(X)
    assert isinstance(fused, tuple) and len(fused) == 3
    for got, want in zip(fused, outputs, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert [m.nodes for m in report.members] == [3, 3, 3]


def test_weighted_is_normalized_weighted_mean(members: list[nn.Module]) -> None:
    weights = [1.0, 2.0, 5.0]
    graph, _ = graphopt.fuse_models(members, X, combine="weighted", weights=weights)
    want = sum(w * o for w, o in zip(weights, _eager(members, X), strict=True)) / sum(weights)
    torch.testing.assert_close(graph(X), want, rtol=0, atol=1e-5)


def test_vote_is_majority_class_index() -> None:
    members = [_mlp(seed) for seed in range(5)]
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(2))
    graph, _ = graphopt.fuse_models(members, x, combine="vote")
    ballots = _eager(members, x).argmax(-1).numpy()  # member x sample
    counts = np.stack([np.bincount(column, minlength=5) for column in ballots.T])
    want = counts.argmax(1)  # ties to the lowest class, as sklearn's hard VotingClassifier
    got = graph(x)
    assert got.dtype == torch.int64 and got.shape == (64,)
    np.testing.assert_array_equal(got.numpy(), want)
    assert len(set(want.tolist())) > 1  # the vote is not a constant


def test_members_are_not_changed(members: list[nn.Module]) -> None:
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in members]
    backbone = nn.Sequential(nn.Linear(8, 8), nn.ReLU()).eval()
    heads = [nn.Sequential(backbone, _mlp(seed)).eval() for seed in range(2)]
    graphopt.fuse_models(members, X)
    graphopt.fuse_models(heads, X, combine="none")
    for model, state in zip(members, before, strict=True):
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key])
    assert sum(1 for _ in heads[1].parameters()) == 2 + 4  # nothing deleted from the second head


def test_shared_backbone_appears_once() -> None:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()).eval()
    heads = [nn.Sequential(backbone, nn.Linear(4 * 8 * 8, 3)).eval(), nn.Sequential(backbone, nn.Linear(256, 7)).eval()]
    x = torch.randn(2, 1, 8, 8)
    graph, report = graphopt.fuse_models(heads, x, combine="none")
    kinds = [graph.info(n).kind for n in graph.compute_nodes()]
    assert kinds.count("conv2d") == 1 and kinds.count("batch_norm") == 1 and kinds.count("linear") == 2
    assert len(report.merged) == 4  # conv, bn, relu, flatten of the second head
    backbone_bytes = sum(t.numel() * t.element_size() for t in backbone.state_dict().values())
    assert report.merged_bytes == backbone_bytes
    assert report.fused.param_bytes == report.unfused.param_bytes - backbone_bytes
    with torch.no_grad():
        for got, head in zip(graph(x), heads, strict=True):
            torch.testing.assert_close(got, head(x), rtol=0, atol=0)


def test_equal_weights_in_separate_copies_merge_but_different_do_not() -> None:
    a, b, c = _mlp(0), _mlp(0), _mlp(1)  # a and b: equal weights, separate modules
    graph, report = graphopt.fuse_models([a, b, c], X, combine="stack", horizontal=False)
    assert len(report.merged) == 3  # all of b
    assert len(graph.compute_nodes()) == 6 + 1  # a and c, and the stack
    torch.testing.assert_close(graph(X), _eager([a, b, c], X), rtol=0, atol=1e-5)


def test_per_member_inputs_and_different_architectures() -> None:
    mlp, cnn = _mlp(0), _cnn(1)
    x_image = torch.randn(3, 1, 8, 8)
    graph, _ = graphopt.fuse_models([mlp, cnn], [(X[:3],), (x_image,)], combine="mean")
    assert len(graph.input_nodes()) == 2
    with torch.no_grad():
        want = (mlp(X[:3]) + cnn(x_image)) / 2
    torch.testing.assert_close(graph(X[:3], x_image), want, rtol=0, atol=1e-5)


def test_optimize_then_matches(members: list[nn.Module]) -> None:
    cnns = [_cnn(seed) for seed in range(3)]
    x = torch.randn(2, 1, 8, 8)
    graph, _ = graphopt.fuse_models(cnns, x, combine="mean")
    optimized, _ = graphopt.optimize(graph, "O2", verify=True)
    kinds = [optimized.info(n).kind for n in optimized.compute_nodes()]
    assert "batch_norm" not in kinds  # folded into the convolutions of every member
    torch.testing.assert_close(optimized(x), _eager(cnns, x).mean(0), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_compiles_for_cpu_and_matches() -> None:
    """The wide graph (grouped convs, batched matmul) and the vote's ops through TVM; the mean is
    compiled by the CLI test (tests/fusion/test_ensemble_cli.py)."""
    cnns = [_cnn(seed) for seed in range(3)]
    x = torch.randn(16, 1, 8, 8)
    graph, report = graphopt.fuse_models(cnns, x, combine="vote")
    assert report.horizontal
    compiled = graphopt.compile(graph, graph.example_inputs, target="cpu")
    with torch.no_grad():
        want = graphopt.fusion.combine_outputs([m(x) for m in cnns], "vote")
    assert len(set(want.tolist())) > 1
    np.testing.assert_array_equal(np.asarray(compiled(x.numpy())), want.numpy())


@pytest.mark.parametrize(
    ("models", "kwargs", "message"),
    [
        ([], {}, "the list is empty"),
        ("mlps", {"combine": "mean"}, "shape 6x7"),
        ("mlps", {"combine": "vote"}, "shape 6x7"),
        ("same", {"combine": "weighted", "weights": [1.0]}, "1 weight(s) given for 2 member(s)"),
        ("same", {"combine": "weighted"}, "needs weights"),
        ("same", {"combine": "mean", "weights": [1.0, 2.0]}, "only with combine='weighted'"),
        ("same", {"combine": "weighted", "weights": [1.0, -1.0]}, "non-negative"),
        ("same", {"combine": "median"}, "unknown combine 'median'"),
    ],
)
def test_bad_input_is_one_line_input_error(models: object, kwargs: dict[str, object], message: str) -> None:
    if models == "mlps":
        models = [_mlp(0), _mlp(1, outputs=7)]
    elif models == "same":
        models = [_mlp(0), _mlp(1)]
    with pytest.raises(InputError) as error:
        graphopt.fuse_models(models, X, **kwargs)  # type: ignore[arg-type]
    assert message in str(error.value) and "\n" not in str(error.value)


def test_per_member_input_count_must_match() -> None:
    with pytest.raises(InputError, match="2 per-member input tuple"):
        graphopt.fuse_models([_mlp(0), _mlp(1), _mlp(2)], [(X,), (X,)])


# -- horizontal fusion ----------------------------------------------------------------------------

IMAGES = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def _kinds(graph: graphopt.Graph) -> list[str]:
    return [graph.info(n).kind for n in graph.compute_nodes()]


@pytest.mark.parametrize("combine", ["mean", "weighted", "vote", "stack"])
def test_same_architecture_members_run_as_one_wide_model(combine: str) -> None:
    cnns = [_cnn(seed) for seed in range(4)]
    weights = [1.0, 2.0, 3.0, 4.0] if combine == "weighted" else None
    graph, report = graphopt.fuse_models(cnns, IMAGES, combine=combine, weights=weights)
    kinds = _kinds(graph)
    assert kinds.count("conv2d") == 2 and kinds.count("batch_norm") == 1 and "linear" not in kinds
    convs = [graph.module.get_submodule(str(n.target)) for n in graph.compute_nodes() if n.op == "call_module"]
    assert [(c.out_channels, c.groups) for c in convs if isinstance(c, nn.Conv2d)] == [(16, 1), (24, 4)]
    assert len(report.horizontal) == 5  # conv1, bn, conv2, flatten, fc
    # the same weights, rearranged: one BatchNorm step counter instead of four, plus the combination's constants
    constants = {"mean": 0, "stack": 0, "weighted": 4, "vote": 5}[combine]
    assert report.fused.params == report.unfused.params - 3 + constants
    with torch.no_grad():
        outputs = [m(IMAGES) for m in cnns]
    want = graphopt.fusion.combine_outputs(outputs, combine, weights)
    if combine == "vote":
        assert torch.equal(graph(IMAGES), want)
    else:
        torch.testing.assert_close(graph(IMAGES), want, rtol=0, atol=1e-5)


def test_auto_fuses_horizontally_only_while_the_wide_activations_stay_in_cache() -> None:
    cnns = [_cnn(seed) for seed in range(4)]
    _, small = graphopt.fuse_models(cnns, IMAGES)  # 4 members x 3x4x8x8 floats: 6 KB per wide layer
    assert small.horizontal
    big_batch = torch.randn(2048, 1, 8, 8)  # 4 x 2048x4x8x8 floats: 8 MiB per wide layer
    graph, big = graphopt.fuse_models(cnns, big_batch)
    assert big.horizontal == []
    assert any("8.0 MiB of activations" in note and "horizontal=True" in note for note in graph.notes)
    torch.testing.assert_close(graph(big_batch), _eager(cnns, big_batch).mean(0), rtol=0, atol=1e-5)
    _, forced = graphopt.fuse_models(cnns, big_batch, horizontal=True)
    assert len(forced.horizontal) == 5
    with pytest.raises(InputError, match="horizontal must be True, False or 'auto'"):
        graphopt.fuse_models(cnns, IMAGES, horizontal="yes")


def test_wide_graph_optimizes_and_still_matches() -> None:
    cnns = [_cnn(seed) for seed in range(3)]
    graph, _ = graphopt.fuse_models(cnns, IMAGES, combine="mean")
    optimized, _ = graphopt.optimize(graph, "O2", verify=True)
    assert "batch_norm" not in _kinds(optimized)  # folded into the wide convolution
    torch.testing.assert_close(optimized(IMAGES), _eager(cnns, IMAGES).mean(0), rtol=0, atol=1e-5)


def test_only_matching_members_fuse_and_the_order_is_kept() -> None:
    torch.manual_seed(7)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 5)).eval()
    members = [_cnn(0), other, _cnn(1)]
    graph, report = graphopt.fuse_models(members, IMAGES, combine="stack")
    assert any("x2: one grouped conv2d groups=2" in line for line in report.horizontal)
    assert _kinds(graph).count("linear") == 1  # the other architecture, left as it is
    torch.testing.assert_close(graph(IMAGES), _eager(members, IMAGES), rtol=0, atol=1e-5)


def test_a_layer_without_a_rule_leaves_the_members_unfused() -> None:
    def reflect(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten()).eval()

    members = [reflect(0), reflect(1)]
    graph, report = graphopt.fuse_models(members, IMAGES, combine="mean")
    assert report.horizontal == [] and any("reflect padding" in note for note in graph.notes)
    assert _kinds(graph).count("conv2d") == 2
    torch.testing.assert_close(graph(IMAGES), _eager(members, IMAGES).mean(0), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_residual_networks_fuse_with_their_adds() -> None:
    from samples.resnet import resnet_small_digits

    members = []
    for seed in (0, 1):
        model = resnet_small_digits(pretrained=False)
        torch.manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.normal_(0.0, 0.1)
        members.append(model)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    graph, report = graphopt.fuse_models(members, x, combine="mean")
    assert report.merged == [] and any("downsample" in line for line in report.horizontal)
    assert _kinds(graph).count("add") >= 4  # the residual adds, once for both members
    torch.testing.assert_close(graph(x), _eager(members, x).mean(0), rtol=0, atol=1e-5)


def test_the_viewer_json_names_members_and_wide_layers() -> None:
    from graphopt.graph_json import graph_to_json

    torch.manual_seed(7)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 5)).eval()
    graph, _ = graphopt.fuse_models([_cnn(0), other, _cnn(1)], IMAGES, combine="mean")
    nodes = graph_to_json(graph)["nodes"]
    assert {n["member"] for n in nodes if n["kind"] == "linear"} == {1}  # the other architecture
    assert {tuple(n["wide"]) for n in nodes if n["kind"] == "conv2d"} == {(0, 2)}


def test_exported_programs_and_graphs_are_members_too() -> None:
    a, b, c = _cnn(0), _cnn(1), _cnn(2)
    program = torch.export.export(a, (IMAGES,))
    graph_b = graphopt.capture(b, IMAGES)
    graph, _ = graphopt.fuse_models([program, graph_b, c], IMAGES, combine="stack")
    torch.testing.assert_close(graph(IMAGES), _eager([a, b, c], IMAGES), rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="member 1 is a str"):
        graphopt.fuse_models([a, "b.py"], IMAGES)  # type: ignore[list-item]
