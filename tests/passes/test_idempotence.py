"""Every built-in pass is idempotent: a second run changes nothing and says so."""

from __future__ import annotations

import pytest
import torch

from graphopt.capture import capture
from graphopt.pass_api import get_pass, list_passes
from graphopt.pass_manager import optimize
from samples.resnet import resnet_small
from tests.passes.models import FLOAT_TOLERANCE, Mlp
from tests.passes.test_cleanup_cse_dce import Repeated
from tests.passes.test_eliminate_dead_weights import pruned_conv_net
from tests.passes.test_fold_constants import WeightMath
from tests.passes.test_mark_fusion_groups import Block
from tests.passes.test_remove_identities import Identities
from tests.passes.test_simplify_algebra import Algebra

# Every pass graphopt ships, read from the registry: a new pass is tested without editing this file.
BUILT_IN = [p.name for p in list_passes() if p.origin.startswith("graphopt.passes.")]
MODELS = {
    "resnet": (resnet_small, (1, 3, 32, 32)),
    "identities": (Identities, (2, 6)),
    "algebra": (Algebra, (2, 3, 4)),
    "weights": (WeightMath, (2, 8)),
    "pruned": (pruned_conv_net, (1, 3, 8, 8)),
    "block": (Block, (1, 4, 6, 6)),
    "mlp": (Mlp, (2, 16)),
    "repeated": (Repeated, (2, 4)),
}


def test_the_registry_lists_the_passes_graphopt_ships() -> None:
    assert {"fold_constants", "fuse_conv_bn", "insert_qdq", "mark_fusion_groups"} <= set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_second_run_changes_nothing(name: str) -> None:
    info = get_pass(name)
    tolerance = info.tolerance if info.tolerance is not None else FLOAT_TOLERANCE
    changed_once = False
    for factory, shape in MODELS.values():
        torch.manual_seed(0)
        graph = capture(factory().eval(), torch.randn(*shape))
        context = {"calibration_data": [torch.randn(*shape) for _ in range(4)]} if info.requires else {}
        once, first = optimize(graph, [name], verify=True, tolerance=tolerance, **context)
        twice, second = optimize(once, [name], verify=True, tolerance=0.0, **context)
        changed_once |= first.passes[0].changed
        assert not second.passes[0].changed, f"{name} changed {factory.__name__} again: {second.passes[0].details}"
        assert twice.text() == once.text()
    assert changed_once, f"no test model exercises {name}"
