"""O1/O2 on the sample models: the "done when" of the passes issue, checked on real models."""

from __future__ import annotations

import pytest
import torch

from graphopt import presets
from graphopt.capture import capture
from graphopt.pass_api import get_pass
from graphopt.pass_manager import optimize
from samples.mobilenet import mobilenet_small
from samples.resnet import resnet_small
from samples.transformer import transformer_encoder
from tests.passes.models import FLOAT_TOLERANCE, assert_matches_eager, kinds

ACTIVATIONS = {"relu", "relu6", "gelu", "silu"}
SAMPLES = {
    "resnet_small": (resnet_small, (2, 3, 32, 32)),
    "mobilenet_small": (mobilenet_small, (2, 3, 32, 32)),
    "transformer": (lambda: transformer_encoder(d_model=64, nhead=4, num_layers=2), (1, 16, 64)),
}


def test_every_preset_pass_is_registered() -> None:
    for name in {p for level in presets.PRESETS.values() for p in level}:
        assert get_pass(name).name == name


@pytest.mark.parametrize("method", ["symbolic_trace", "export"])
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_o2_on_samples(sample: str, method: str) -> None:
    factory, shape = SAMPLES[sample]
    model = factory()
    torch.manual_seed(0)
    graph = capture(model, torch.randn(*shape), method=method)
    optimized, report = optimize(graph, "O2", verify=True, tolerance=FLOAT_TOLERANCE)

    assert "batch_norm" not in kinds(optimized)
    grouped = {n for members in optimized.fusion_groups().values() for n in members}
    for node in optimized.compute_nodes():  # every conv/linear followed by an activation is fused with it
        if optimized.info(node).kind in {"conv2d", "linear", "matmul"}:
            chain = [node, *node.users]
            if len(node.users) == 1 and optimized.info(chain[1]).kind == "add":
                chain += list(chain[1].users)  # a bias or residual add before the activation
            if any(optimized.info(n).kind in ACTIVATIONS for n in chain[1:]):
                # a residual branch's conv may find the add already fused into the other branch's group
                assert node in grouped or chain[1] in grouped, f"{node.name} is followed by an activation, not fused"
    read = {str(n.target) for n in optimized.nodes if n.op in ("get_attr", "call_module")}
    for name, _ in [*optimized.module.named_parameters(), *optimized.module.named_buffers()]:
        assert any(name == r or name.startswith(r + ".") for r in read), f"unused weight {name} survived"
    assert report.final.param_bytes <= report.initial.param_bytes
    assert all(p.max_error is not None and p.max_error <= FLOAT_TOLERANCE for p in report.passes)
    assert_matches_eager(model, optimized, *shape, tolerance=FLOAT_TOLERANCE)


def test_o2_report_shows_size_and_flops_before_and_after_each_pass() -> None:
    graph = capture(resnet_small(), torch.randn(1, 3, 32, 32))
    _, report = optimize(graph, "O2")
    fuse = next(p for p in report.passes if p.name == "fuse_conv_bn")
    assert fuse.before.nodes - fuse.after.nodes == len(fuse.details["folded"]) == 12
    assert fuse.after.flops < fuse.before.flops and fuse.after.param_bytes < fuse.before.param_bytes
    assert report.to_dict()["passes"][0]["before"].keys() == {"nodes", "params", "param_bytes", "flops"}
    groups = next(p for p in report.passes if p.name == "mark_fusion_groups")
    assert groups.details["patterns"] == {"conv2d+bias+relu": 5, "conv2d+bias+add+relu": 4, "matmul+bias": 1}


def test_o1_is_bit_identical() -> None:
    model = mobilenet_small()
    graph = capture(model, torch.randn(1, 3, 32, 32))
    optimized, _ = optimize(graph, "O1", verify=True, tolerance=0.0)
    assert_matches_eager(model, optimized, 2, 3, 32, 32, tolerance=0.0)
